"""The batch scorer's database work: reading students in chunks, writing assessments in bulk, and the run log.

Two dialects, each on its fastest path: PostgreSQL copies a chunk into a temporary table (`COPY`) and upserts
from it in one statement; SQLite upserts with `executemany` in one transaction. Either way a chunk's assessments,
its failed items and the run's progress (`last_student_id`, counts) commit together, so a run killed at any
point leaves the database at a chunk boundary, and the upsert on (student_id, skill, features_hash) makes
writing a chunk twice harmless. A chunk the database refuses for a student's data (an id longer than the
assessments' column, in a team's own `student_features`) is written again around that student, whose items are
set aside (`inference.monitoring.writes`): one bad row never stops a run.

`student_features` has a column per feature of the served models: a `BatchDatabase` is made for a list of feature
names, reads and writes those columns, and creates the table or adds the columns it lacks. Feature names are any
text, so wherever SQL is written out here they are quoted as identifiers.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import socket
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import sqlalchemy.exc
from psycopg import sql
from sqlalchemy import (
    ARRAY,
    Connection,
    Engine,
    String,
    and_,
    any_,
    bindparam,
    exists,
    func,
    insert,
    or_,
    select,
    type_coerce,
    update,
)
from sqlalchemy import (
    column as sql_column,
)
from sqlalchemy.engine import Row

from inference.batch.chunks import FeatureChunk, ItemFailure, ScoredChunk
from inference.batch.pgcopy import encode_rows, timestamp_micros
from inference.errors import RunInProgress, RunSuperseded, UnsupportedDatabase
from inference.logs import LOGGER_NAME
from inference.monitoring.metrics import count_rows_dropped
from inference.monitoring.writes import (
    INVALID_ROW,
    UNSTORABLE,
    WriteResult,
    is_refused_row,
    printable,
    quarantine,
    refusal_reason,
    write_around_refusals,
    write_isolating,
)
from inference.sharding import EVERYONE, Shard
from inference.storage import (  # the run states are the scoring_runs table's
    FAILED,
    INTERRUPTED,
    RUNNING,
    STUDENT_FEATURES,
    SUCCEEDED,
    ensure_student_features,
    scoring_failures,
    scoring_runs,
    shard_key_of,
    skill_assessments,
)

logger = logging.getLogger(LOGGER_NAME)

Mode = Literal["full", "incremental"]
MODES: tuple[Mode, ...] = ("full", "incremental")

UNFINISHED = (RUNNING, FAILED, INTERRUPTED)

# An assessment is rewritten only when something about it changed: the model's answer, or the features' time
# stamp (the watermark an incremental run compares with). A rerun over unchanged data writes no row.
_ON_CONFLICT = """
ON CONFLICT (student_id, skill, features_hash) DO UPDATE SET
    score = excluded.score,
    confidence = excluded.confidence,
    model_version = excluded.model_version,
    features_updated_at = {latest}(skill_assessments.features_updated_at, excluded.features_updated_at),
    scored_at = excluded.scored_at,
    run_id = excluded.run_id
WHERE skill_assessments.model_version <> excluded.model_version
   OR skill_assessments.score <> excluded.score
   OR skill_assessments.features_updated_at < excluded.features_updated_at
"""
_ASSESSMENT_COLUMNS = (
    "student_id, skill, features_hash, score, confidence, model_version, features_updated_at, scored_at, run_id"
)
_POSTGRES_STAGE = """
CREATE TEMPORARY TABLE IF NOT EXISTS assessment_stage (
    student_id text, skill smallint, features_hash bigint, score float8, confidence float8,
    features_updated_at timestamptz
) ON COMMIT DELETE ROWS
"""
# Skill names and model versions travel as small arrays indexed by the staged skill number.
_POSTGRES_UPSERT = (
    f"INSERT INTO skill_assessments ({_ASSESSMENT_COLUMNS}) "
    "SELECT student_id, (%(skills)s::text[])[skill + 1], features_hash, score, confidence, "
    "(%(versions)s::text[])[skill + 1], features_updated_at, %(scored_at)s, %(run_id)s "
    "FROM assessment_stage" + _ON_CONFLICT.format(latest="GREATEST")
)
_SQLITE_UPSERT = f"INSERT INTO skill_assessments ({_ASSESSMENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)" + (
    _ON_CONFLICT.format(latest="max")
)
# What SQLAlchemy writes for a DateTime on SQLite; time stamps written here must compare with its own as text.
_SQLITE_DATETIME = "%Y-%m-%d %H:%M:%S.%f"
# The updated_at values Python's datetime can hold, with a day's margin for the session's time zone.
_READABLE_TIMES = (datetime(1, 1, 2, tzinfo=UTC), datetime(9999, 12, 30, tzinfo=UTC))
# The run's checkpoint is a student_id, in a column of this many characters. A longer id (a team's own
# student_features may hold one) is checkpointed as its prefix, which sorts before it: a resumed run reads that
# student again, where storing the whole id would fail the chunk.
_CHECKPOINT_CHARS = scoring_runs.c.last_student_id.type.length


@dataclass(frozen=True)
class ChunkWrite:
    written: int  # assessments inserted or changed
    unchanged: int  # assessments already stored as they are
    failed: int  # items that could not be scored, or whose student the database refused
    failures_recorded: int  # of those, the ones new to scoring_failures
    refused: int = 0  # items of students the database refused (their rows set aside, see `_RefusedStudent`)


@dataclass(frozen=True)
class _RefusedStudent:
    """A student whose rows the database refused: its items become failures (`unstorable` for the scored ones),
    recorded in scoring_failures, or, when that table refuses them too, the student is kept in rejected_rows."""

    student_id: str
    reason: str
    items: list[ItemFailure]  # one per skill
    assessments: list[dict[str, object]]  # the scores that were not stored
    recorded: bool = True  # in scoring_failures
    quarantined: bool = False  # in rejected_rows, scoring_failures having refused it too

    @classmethod
    def of(cls, scored: ScoredChunk, row: int, reason: str) -> _RefusedStudent:
        student = scored.students([row])
        student_id, updated_at = student.chunk.student_ids[0], student.chunk.updated_at[0]
        message = f"the database refused the student's assessments: {reason}"
        items, assessments = list(student.failures), []
        for column, skill in enumerate(student.skills):
            if student.scored[0, column]:
                items.append(ItemFailure(student_id, skill, UNSTORABLE, message, updated_at))
                assessments.append(
                    {
                        "skill": skill,
                        "score": float(student.scores[0, column]),
                        "confidence": float(student.confidences[0, column]),
                        "features_hash": int(student.hashes[0, column]),
                        "model_version": student.versions[column],
                    }
                )
        return cls(student_id, reason, items, assessments)

    def quarantine_row(self, run_id: int) -> dict[str, object]:
        return {
            "student_id": self.student_id,
            "features_updated_at": self.items[0].features_updated_at if self.items else None,
            "run_id": run_id,
            "assessments": self.assessments,
            "failures": [
                {"skill": item.skill, "code": item.code, "message": item.message}
                for item in self.items
                if item.code != UNSTORABLE
            ],
        }


class _AlreadyCommitted(Exception):
    """A retried chunk write found its first attempt committed after all."""


@dataclass(frozen=True)
class RunRecord:
    run_id: int
    mode: str
    shard: Shard
    status: str
    model_versions: dict[str, str]
    last_student_id: str | None
    features_watermark: datetime | None = None

    @classmethod
    def from_row(cls, row: Row[Any]) -> RunRecord:
        versions = row.model_versions if isinstance(row.model_versions, dict) else json.loads(row.model_versions)
        return cls(
            row.run_id,
            row.mode,
            Shard(row.shard_index, row.shard_count),
            row.status,
            versions,
            row.last_student_id,
            _aware(row.features_watermark),
        )


class BatchDatabase:
    """Everything the scorer asks of the database, on an engine from `inference.storage.engine_for`.

    `feature_names` are the `student_features` columns read and written (for a run: `served_feature_names` of its
    models); the table is created, or given the columns it lacks, here. The run log needs none (`()`).
    """

    def __init__(self, engine: Engine, feature_names: Sequence[str]) -> None:
        if engine.dialect.name not in ("postgresql", "sqlite"):
            raise UnsupportedDatabase(
                f"DATABASE_URL: the batch scorer supports PostgreSQL and SQLite, not {engine.dialect.name}"
            )
        self.engine = engine
        self.is_postgres = engine.dialect.name == "postgresql"
        self.feature_names = tuple(feature_names)
        self.student_features = ensure_student_features(engine, self.feature_names)
        # PostgreSQL upserts two chunks at once on two connections (the server's insert work is the bottleneck of
        # a run; a second backend took a 1M-student run from 33.8 s to 26.6 s); SQLite has one writer.
        self.concurrent_writers = 2 if self.is_postgres else 1

    # --- reading students

    def count_pending(self, *, mode: Mode, shard: Shard, after: str | None) -> int:
        query = select(func.count()).select_from(self.student_features).where(*self._pending(mode, shard, after))
        with self._reading() as connection:
            return int(connection.execute(query).scalar_one())

    def read_chunk(self, *, mode: Mode, shard: Shard, after: str | None, limit: int) -> FeatureChunk:
        """The next `limit` students after `after` (student_id order) that the run has to score."""
        return self._read(self._pending(mode, shard, after), limit)

    def pending_since(self, *, shard: Shard, since: datetime) -> list[str]:
        """The ids, in student_id order, of the shard's students that an incremental run has to score among those
        updated after `since`: a range of the updated_at index, compared with their assessments. Read at once:
        in chunks, each `ORDER BY student_id LIMIT n` made PostgreSQL walk the whole primary key instead (0.7 s a
        chunk over 1M students)."""
        features = self.student_features.c
        query = select(features.student_id).where(*self._pending("incremental", shard, None, since))
        with self._reading() as connection:
            return list(connection.execute(query.order_by(features.student_id)).scalars())

    def read_students(self, student_ids: Sequence[str]) -> FeatureChunk:
        """The features of `student_ids` (those still there), in student_id order."""
        features = self.student_features.c
        if self.is_postgres:
            wanted = features.student_id == any_(bindparam("ids", list(student_ids), type_=ARRAY(String)))
        else:  # one parameter whatever the count: SQLite allows 32,766
            ids = select(sql_column("value", String)).select_from(func.json_each(json.dumps(list(student_ids))))
            wanted = features.student_id.in_(ids.scalar_subquery())
        return self._read([wanted], None)

    def _read(self, conditions: list[Any], limit: int | None) -> FeatureChunk:
        features = self.student_features.c
        updated_at = features.updated_at
        if not self.is_postgres:
            # Read and written back as the stored text, so an incremental run compares like with like.
            updated_at = type_coerce(updated_at, String)
        query = (
            select(features.student_id, updated_at, *(features[name] for name in self.feature_names))
            .where(*conditions)
            .order_by(features.student_id)
            .limit(limit)
        )
        with self._reading() as connection:
            if not self.is_postgres:
                return FeatureChunk.from_rows(connection.execute(query).all(), self.feature_names)
            # psycopg's binary protocol: floats arrive without text parsing (1M students: 10 s read as text, 4 s).
            compiled = query.compile(dialect=self.engine.dialect)
            driver = connection.connection.driver_connection
            assert driver is not None
            with driver.cursor(binary=True) as cursor:
                cursor.execute(str(compiled), compiled.params)
                return FeatureChunk.from_rows(cursor.fetchall(), self.feature_names, numbers_guaranteed=True)

    @contextmanager
    def _reading(self) -> Iterator[Connection]:
        with self.engine.connect() as connection:
            if self.is_postgres:
                # Compiling these scans to machine code (PostgreSQL's JIT) costs more than it saves: ~0.6 s a query.
                connection.exec_driver_sql("SET LOCAL jit = off")
            yield connection

    def refresh_statistics(self) -> None:
        """After a bulk write: the planner's row counts drive the incremental anti-join's plan (a stale count made
        PostgreSQL sort 7 million assessments per query instead of hashing them: 6.4 s against 1.6 s)."""
        with self.engine.begin() as connection:
            if self.is_postgres:
                connection.exec_driver_sql("ANALYZE student_features, skill_assessments, scoring_failures")
            else:
                connection.exec_driver_sql("PRAGMA optimize")

    def unreadable_students(self, *, shard: Shard, sample: int = 20) -> tuple[int, list[str]]:
        """Students of the shard whose updated_at PostgreSQL holds but Python cannot (infinity, year 10000 and
        after): how many, and the first few ids. Runs leave them out rather than fail on them every night."""
        if not self.is_postgres:
            return 0, []  # read as the stored text: nothing to fail on
        features = self.student_features.c
        earliest, latest = _READABLE_TIMES  # outside them, as two ranges of the updated_at index, not a scan
        unreadable = [or_(features.updated_at < earliest, features.updated_at > latest), *self._in_shard(shard)]
        with self._reading() as connection:
            count = connection.execute(
                select(func.count()).select_from(self.student_features).where(*unreadable)
            ).scalar_one()
            ids = connection.execute(
                select(features.student_id).where(*unreadable).order_by(features.student_id).limit(sample)
            ).scalars()
            return int(count), list(ids)

    def _in_shard(self, shard: Shard) -> list[Any]:
        if shard.is_everyone:
            return []
        return [shard_key_of(self.student_features.c.student_id) % shard.count == shard.index]

    def _pending(self, mode: Mode, shard: Shard, after: str | None, since: datetime | None = None) -> list[Any]:
        features = self.student_features.c
        conditions: list[Any] = self._in_shard(shard)
        if after is not None:
            conditions.append(features.student_id > after)
        if since is not None:
            # A range of the updated_at index: the students changed lately, not every student's assessments.
            conditions.append(features.updated_at > since)
        if self.is_postgres:
            conditions.append(features.updated_at.between(*_READABLE_TIMES))
        if mode == "incremental":
            # Scored, or found unscorable, since the features last changed: nothing to do.
            for table in (skill_assessments, scoring_failures):
                conditions.append(
                    ~exists().where(
                        table.c.student_id == features.student_id,
                        table.c.features_updated_at >= features.updated_at,
                    )
                )
        return conditions

    # --- writing a chunk

    def write_chunk(
        self,
        scored: ScoredChunk,
        *,
        run_id: int,
        after: str | None,
        before_commit: Callable[[], None] | None = None,
    ) -> ChunkWrite:
        """Upsert the chunk's assessments, record its failed items and advance the run, in one transaction.

        `after` is the run's checkpoint this chunk follows: the chunk commits only while the run is still
        `running` with that checkpoint. A run superseded by another (its shard's lock was lost with a dropped
        connection) is stopped by `RunSuperseded`; a retried write whose first commit did go through is
        recognised and not counted twice. `before_commit` runs after the bulk work and before the checkpoint is
        written: concurrent writers wait there for the chunk before theirs, so chunks commit in order (an
        exception from it rolls this chunk back).

        When the database refuses the chunk for a student's data, the chunk is written again in a new transaction,
        in parts that find the refused students by bisection (`write_around_refusals`, in savepoints): their items
        are set aside (`_RefusedStudent`) and counted in inference_rows_dropped_total{table="skill_assessments"},
        the other students are written as usual. Good chunks take the fast path alone: no extra statement.
        """
        now = datetime.now(UTC)
        try:
            return self._commit_chunk(scored, run_id, after, before_commit, now, around_refusals=False)
        except Exception as err:
            if not is_refused_row(err):
                raise
            logger.warning(
                "%s: the database refused a row (%s); writing the chunk around it",
                _describe(scored),
                refusal_reason(err),
            )
        return self._commit_chunk(scored, run_id, after, before_commit, now, around_refusals=True)

    def _commit_chunk(
        self,
        scored: ScoredChunk,
        run_id: int,
        after: str | None,
        before_commit: Callable[[], None] | None,
        now: datetime,
        *,
        around_refusals: bool,
    ) -> ChunkWrite:
        refused: list[_RefusedStudent] = []
        try:
            with self.engine.begin() as connection:
                if around_refusals:
                    written, recorded, refused = self._write_around_refusals(connection, scored, run_id, now)
                else:
                    written, recorded = self._write_students(connection, scored, run_id, now)
                if before_commit is not None:
                    before_commit()
                refused_items = sum(len(student.items) for student in refused)
                refused_assessments = sum(len(student.assessments) for student in refused)
                result = ChunkWrite(
                    written,
                    scored.assessment_count - refused_assessments - written,
                    len(scored.failures) + refused_assessments,
                    recorded,
                    refused_items,
                )
                advanced = connection.execute(
                    update(scoring_runs)
                    .where(
                        scoring_runs.c.run_id == run_id,
                        scoring_runs.c.status == RUNNING,
                        scoring_runs.c.last_student_id.is_not_distinct_from(_checkpoint(after)),
                    )
                    .values(
                        last_student_id=_checkpoint(scored.last_student_id),
                        heartbeat_at=now,
                        students_read=scoring_runs.c.students_read + len(scored.chunk),
                        assessments_written=scoring_runs.c.assessments_written + result.written,
                        assessments_unchanged=scoring_runs.c.assessments_unchanged + result.unchanged,
                        items_failed=scoring_runs.c.items_failed + result.failed,
                    )
                )
                if advanced.rowcount != 1:
                    self._not_advanced(connection, run_id, scored)
        except _AlreadyCommitted:
            result = replace(result, written=0, unchanged=result.written + result.unchanged, failures_recorded=0)
        _report_refused(run_id, refused)
        return result

    def _write_students(
        self, connection: Connection, scored: ScoredChunk, run_id: int, now: datetime, *, fresh_stage: bool = False
    ) -> tuple[int, int]:
        """Upsert the assessments of `scored` and record its failed items: (assessments written, failures recorded).
        `fresh_stage`: empty PostgreSQL's stage first (an earlier part of the transaction left its rows there)."""
        if self.is_postgres:
            written = self._upsert_postgres(connection, scored, run_id, now, fresh_stage=fresh_stage)
        else:
            written = self._upsert_sqlite(connection, scored, run_id, now)
        return written, self._record_failures(connection, scored.failures, run_id, now)

    def _write_around_refusals(
        self, connection: Connection, scored: ScoredChunk, run_id: int, now: datetime
    ) -> tuple[int, int, list[_RefusedStudent]]:
        """The chunk's students written in parts, around those the database refuses; each of those set aside: its
        items recorded in scoring_failures, or, when that table refuses them too, the student in rejected_rows."""
        parts, refusals = write_around_refusals(
            connection,
            len(scored.chunk),
            lambda rows: self._write_students(connection, scored.students(rows), run_id, now, fresh_stage=True),
            refused_whole=True,
        )
        refused = [_RefusedStudent.of(scored, row, reason) for row, reason in refusals.items()]
        recorded, unrecorded = write_around_refusals(
            connection,
            len(refused),
            lambda positions: self._record_failures(
                connection, [item for position in positions for item in refused[position].items], run_id, now
            ),
        )
        kept = quarantine(
            connection,
            skill_assessments.name,
            [(refused[position].quarantine_row(run_id), reason) for position, reason in unrecorded.items()],
        )
        for position, quarantined in zip(unrecorded, kept, strict=True):
            refused[position] = replace(refused[position], recorded=False, quarantined=quarantined)
        written = sum(part_written for part_written, _ in parts)
        return written, sum(part_recorded for _, part_recorded in parts) + sum(recorded), refused

    def _not_advanced(self, connection: Connection, run_id: int, scored: ScoredChunk) -> None:
        run = connection.execute(select(scoring_runs).where(scoring_runs.c.run_id == run_id)).one()
        if run.status == RUNNING and run.last_student_id == _checkpoint(scored.last_student_id):
            raise _AlreadyCommitted  # rolls this attempt back; the first one is what counts
        raise RunSuperseded(
            f"run {run_id} is {run.status} at {run.last_student_id!r} in the database: another run of its shard "
            "took over (was the database connection holding the shard's lock lost?); stopping"
        )

    def _record_failures(
        self, connection: Connection, failures: Sequence[ItemFailure], run_id: int, now: datetime
    ) -> int:
        """Insert the failed items not recorded before (same student, skill and features); how many."""
        if not failures:
            return 0
        rows = [
            (run_id, failure.student_id, failure.skill, failure.code, failure.message, failure.features_updated_at)
            for failure in failures
        ]
        columns = "run_id, student_id, skill, code, message, features_updated_at, failed_at"
        driver = connection.connection.driver_connection
        assert driver is not None
        if self.is_postgres:
            with driver.cursor() as cursor:
                cursor.executemany(
                    f"INSERT INTO scoring_failures ({columns}) VALUES (%s, %s, %s, %s, %s, %s, %s) "
                    "ON CONFLICT (student_id, skill, features_updated_at) DO NOTHING",
                    [(*row, now) for row in rows],
                )
                return max(cursor.rowcount, 0)
        cursor = driver.cursor()
        try:
            cursor.executemany(
                f"INSERT INTO scoring_failures ({columns}) VALUES (?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (student_id, skill, features_updated_at) DO NOTHING",
                [(*row, now.strftime(_SQLITE_DATETIME)) for row in rows],
            )
            return max(cursor.rowcount, 0)
        finally:
            cursor.close()

    def _upsert_postgres(
        self, connection: Connection, scored: ScoredChunk, run_id: int, now: datetime, *, fresh_stage: bool = False
    ) -> int:
        columns = scored.assessment_columns()
        rows = columns["row"]
        data = encode_rows(
            scored.chunk.student_ids,
            rows,
            [
                columns["skill"].astype(np.int16),
                columns["features_hash"],
                columns["score"],
                columns["confidence"],
                timestamp_micros(scored.chunk.updated_at)[rows],
            ],
        )
        driver = connection.connection.driver_connection
        assert driver is not None
        with driver.cursor() as cursor:
            cursor.execute(_POSTGRES_STAGE)
            if fresh_stage:
                cursor.execute("TRUNCATE assessment_stage")
            with cursor.copy(
                "COPY assessment_stage (student_id, skill, features_hash, score, confidence, features_updated_at) "
                "FROM STDIN (FORMAT BINARY)"
            ) as copy:
                copy.write(data)
            cursor.execute(
                _POSTGRES_UPSERT,
                {"skills": list(scored.skills), "versions": list(scored.versions), "scored_at": now, "run_id": run_id},
            )
            return max(cursor.rowcount, 0)

    def _upsert_sqlite(self, connection: Connection, scored: ScoredChunk, run_id: int, now: datetime) -> int:
        chunk, columns = scored.chunk, scored.assessment_columns()
        scored_at = now.strftime(_SQLITE_DATETIME)
        rows = [
            (
                chunk.student_ids[row],
                scored.skills[skill],
                features_hash,
                score,
                confidence,
                scored.versions[skill],
                chunk.updated_at[row],
                scored_at,
                run_id,
            )
            for row, skill, score, confidence, features_hash in zip(
                columns["row"].tolist(),
                columns["skill"].tolist(),
                columns["score"].tolist(),
                columns["confidence"].tolist(),
                columns["features_hash"].tolist(),
                strict=True,
            )
        ]
        driver = connection.connection.driver_connection
        assert driver is not None
        cursor = driver.cursor()
        try:
            cursor.executemany(_SQLITE_UPSERT, rows)
            return max(cursor.rowcount, 0)
        finally:
            cursor.close()

    # --- loading students (the demo population, tests)

    def upsert_students(self, student_ids: list[str], values: np.ndarray, *, updated_at: datetime) -> WriteResult:
        """Insert or replace students' features: `values` is (n, len(feature_names)), NaN for not measured. A
        student the database refuses (an id it cannot hold) is kept in rejected_rows and the others are written
        (`inference.monitoring.writes.write_isolating`); `stored` counts the students written."""
        if values.shape != (len(student_ids), len(self.feature_names)):
            raise ValueError(
                f"values: expected {len(student_ids)} rows of {len(self.feature_names)} features, got {values.shape}"
            )
        columns = ("student_id", *self.feature_names, "updated_at")

        def write(connection: Connection, rows: range) -> int:
            ids, part = student_ids[rows.start : rows.stop], values[rows.start : rows.stop]
            if self.is_postgres:
                self._upsert_students_postgres(
                    connection, columns, ids, part, updated_at, whole=len(rows) == len(student_ids)
                )
            else:
                self._upsert_students_sqlite(connection, columns, ids, part, updated_at)
            return len(rows)

        def row_of(index: int) -> dict[str, object]:
            features = (None if value != value else value for value in values[index].tolist())
            return dict(zip(columns, (student_ids[index], *features, updated_at), strict=True))

        written, rejected = write_isolating(self.engine, STUDENT_FEATURES, len(student_ids), write, row_of)
        return WriteResult(sum(written), rejected)

    def _upsert_students_postgres(
        self,
        connection: Connection,
        columns: Sequence[str],
        student_ids: Sequence[str],
        values: np.ndarray,
        updated_at: datetime,
        *,
        whole: bool,
    ) -> None:
        names = sql.SQL(", ").join(map(sql.Identifier, columns))
        on_conflict = sql.SQL(" ON CONFLICT (student_id) DO UPDATE SET {}").format(
            sql.SQL(", ").join(sql.SQL("{0} = excluded.{0}").format(sql.Identifier(name)) for name in columns[1:])
        )
        driver = connection.connection.driver_connection
        assert driver is not None
        with driver.cursor() as cursor:
            if not whole:  # a part of the students: an earlier part of this transaction may have left its stage
                cursor.execute("DROP TABLE IF EXISTS student_stage")
            # Dropped at commit: a stage kept on the pooled connection would miss columns added since.
            cursor.execute(
                "CREATE TEMPORARY TABLE student_stage (LIKE student_features INCLUDING DEFAULTS) ON COMMIT DROP"
            )
            stamp = updated_at.isoformat()
            with cursor.copy(sql.SQL("COPY student_stage ({}) FROM STDIN").format(names)) as copy:
                copy.write(
                    "".join(
                        _copy_line(student_id, row, stamp)
                        for student_id, row in zip(student_ids, values.tolist(), strict=True)
                    )
                )
            cursor.execute(
                sql.SQL("INSERT INTO student_features ({0}) SELECT {0} FROM student_stage").format(names) + on_conflict
            )

    def _upsert_students_sqlite(
        self,
        connection: Connection,
        columns: Sequence[str],
        student_ids: Sequence[str],
        values: np.ndarray,
        updated_at: datetime,
    ) -> None:
        driver = connection.connection.driver_connection
        assert driver is not None
        quote = self.engine.dialect.identifier_preparer.quote
        assignments = ", ".join(f"{quote(name)} = excluded.{quote(name)}" for name in columns[1:])
        placeholders = ", ".join("?" * len(columns))
        stamp = updated_at.astimezone(UTC).strftime(_SQLITE_DATETIME)
        driver.executemany(
            f"INSERT INTO student_features ({', '.join(map(quote, columns))}) VALUES ({placeholders}) "
            f"ON CONFLICT (student_id) DO UPDATE SET {assignments}",
            [
                (student_id, *(None if value != value else value for value in row), stamp)
                for student_id, row in zip(student_ids, values.tolist(), strict=True)
            ],
        )

    def count_students(self) -> int:
        with self.engine.connect() as connection:
            return int(connection.execute(select(func.count()).select_from(self.student_features)).scalar_one())

    # --- the run log

    def incremental_since(self, shard: Shard) -> datetime | None:
        """The watermark of the shard's latest succeeded run of either mode (a run of everyone covers every shard):
        every student updated before it had been read by then. None: no run has finished."""
        covering = [scoring_runs.c.shard_index == shard.index, scoring_runs.c.shard_count == shard.count]
        if not shard.is_everyone:
            covering = [or_(and_(*covering), scoring_runs.c.shard_count == EVERYONE.count)]
        query = select(func.max(scoring_runs.c.features_watermark)).where(scoring_runs.c.status == SUCCEEDED, *covering)
        with self.engine.connect() as connection:
            return _aware(connection.execute(query).scalar_one_or_none())

    def latest_run(self, *, mode: Mode, shard: Shard) -> RunRecord | None:
        query = (
            select(scoring_runs)
            .where(
                scoring_runs.c.mode == mode,
                scoring_runs.c.shard_index == shard.index,
                scoring_runs.c.shard_count == shard.count,
            )
            .order_by(scoring_runs.c.run_id.desc())
            .limit(1)
        )
        with self.engine.connect() as connection:
            row = connection.execute(query).first()
        return RunRecord.from_row(row) if row is not None else None

    def start_run(
        self,
        *,
        mode: Mode,
        shard: Shard,
        model_versions: dict[str, str],
        resumed_from: RunRecord | None,
        abandoned: RunRecord | None,
        students_pending: int,
        students_skipped: int = 0,
        started_at: datetime | None = None,
    ) -> int:
        """Record a new run, and `abandoned` (a run left "running" by a process that is gone) as interrupted.
        `started_at`: when it began reading the database (default now), its watermark unless it resumes a run."""
        now = datetime.now(UTC)
        started_at = started_at or now
        watermark = resumed_from.features_watermark if resumed_from is not None else started_at
        with self.engine.begin() as connection:
            if abandoned is not None:
                connection.execute(
                    update(scoring_runs)
                    .where(scoring_runs.c.run_id == abandoned.run_id)
                    .values(status=INTERRUPTED, error="the process ended without finishing (killed?)")
                )
            result = connection.execute(
                insert(scoring_runs).values(
                    mode=mode,
                    shard_index=shard.index,
                    shard_count=shard.count,
                    status=RUNNING,
                    model_versions=model_versions,
                    resumed_from=resumed_from.run_id if resumed_from else None,
                    worker=f"{socket.gethostname()}:{os.getpid()}",
                    started_at=started_at,
                    heartbeat_at=now,
                    features_watermark=watermark,
                    last_student_id=resumed_from.last_student_id if resumed_from else None,
                    students_pending=students_pending,
                    students_skipped=students_skipped,
                    students_read=0,
                    assessments_written=0,
                    assessments_unchanged=0,
                    items_failed=0,
                )
            )
            (run_id,) = result.inserted_primary_key or (None,)
        assert run_id is not None
        return int(run_id)

    def finish_run(self, run_id: int, *, status: str, error: str | None = None, **figures: float | None) -> None:
        now = datetime.now(UTC)
        with self.engine.begin() as connection:
            connection.execute(
                update(scoring_runs)
                .where(scoring_runs.c.run_id == run_id)
                .values(status=status, finished_at=now, heartbeat_at=now, error=error, **figures)
            )

    def run(self, run_id: int) -> Row[Any]:
        with self.engine.connect() as connection:
            return connection.execute(select(scoring_runs).where(scoring_runs.c.run_id == run_id)).one()

    def recent_runs(self, limit: int) -> list[Row[Any]]:
        query = select(scoring_runs).order_by(scoring_runs.c.run_id.desc()).limit(limit)
        with self.engine.connect() as connection:
            return list(connection.execute(query).all())

    @contextmanager
    def shard_lock(self, shard: Shard) -> Iterator[None]:
        """Held for a whole run: a second run of the same shard refuses to start instead of doing the work
        twice. Released by the operating system or the database when the process dies, however it dies."""
        name = f"inference.batch shard {shard}"
        if self.is_postgres:
            key = int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big", signed=True)
            with self.engine.connect() as connection:
                acquired = connection.execute(select(func.pg_try_advisory_lock(key))).scalar_one()
                connection.commit()
                if not acquired:
                    raise RunInProgress(f"another run of shard {shard} holds its lock (PostgreSQL advisory lock)")
                try:
                    yield
                finally:
                    # A connection lost during the run took the lock with it; nothing to release then.
                    with suppress(sqlalchemy.exc.DBAPIError):
                        connection.execute(select(func.pg_advisory_unlock(key)))
                        connection.commit()
            return
        database = self.engine.url.database
        if not database or database == ":memory:":
            yield
            return
        lock_path = Path(f"{database}.batch-{shard.index}-of-{shard.count}.lock")
        with lock_path.open("a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as err:
                raise RunInProgress(f"another run of shard {shard} holds its lock ({lock_path})") from err
            yield


def _aware(moment: datetime | None) -> datetime | None:
    """A time read back from the run log: SQLite gives it without its zone, which is UTC as written."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def _checkpoint(student_id: str | None) -> str | None:
    return student_id[:_CHECKPOINT_CHARS] if student_id is not None else None


def _describe(scored: ScoredChunk) -> str:
    ids = scored.chunk.student_ids
    return f"writing {len(ids):,} students ({printable(str(ids[0]))[:200]} .. {printable(str(ids[-1]))[:200]})"


def _report_refused(run_id: int, refused: Sequence[_RefusedStudent]) -> None:
    """Once committed: count the items of refused students (lost ones apart) and name each student in the log."""
    if not refused:
        return
    kept = sum(len(student.items) for student in refused if student.recorded or student.quarantined)
    count_rows_dropped(skill_assessments.name, INVALID_ROW, kept)
    count_rows_dropped(skill_assessments.name, UNSTORABLE, sum(len(student.items) for student in refused) - kept)
    for student in refused:
        where = (
            "its items are in scoring_failures (unstorable)"
            if student.recorded
            else "it is kept in rejected_rows"
            if student.quarantined
            else "it could not be kept anywhere (see the error above)"
        )
        logger.warning(
            "run %d: student %s: the database refused its rows (%s); %s",
            run_id,
            printable(str(student.student_id))[:200],
            student.reason,
            where,
        )


def _copy_line(student_id: str, values: list[float], stamp: str) -> str:
    """One row in COPY's text format; NaN (not measured) becomes NULL."""
    numbers = ("\\N" if value != value else repr(value) for value in values)
    return "\t".join((_copy_escape(student_id), *numbers, stamp)) + "\n"


def _copy_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
