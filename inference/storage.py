"""The database: SQLAlchemy Core tables on `DATABASE_URL` (a SQLite file by default, PostgreSQL in production),
created by the service and the tools themselves, and the engine that reaches them.

Only tables and the engine live here; the batch scorer's bulk reads and writes are in `inference.batch.database`.
"""

from __future__ import annotations

import fcntl
import logging
import os
import string
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Connection,
    DateTime,
    Engine,
    Float,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    func,
    inspect,
    select,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.schema import CreateColumn
from sqlalchemy.sql.expression import FunctionElement

from inference.errors import SchemaMismatch
from inference.logs import LOGGER_NAME
from inference.sharding import SHARD_KEY_HEX_DIGITS, shard_key

logger = logging.getLogger(LOGGER_NAME)

metadata = MetaData()

# Identifiers compared byte by byte on PostgreSQL: the batch tables' primary keys are written millions of rows at a
# time, and comparing keys under a linguistic collation cost about 8% of the bulk upsert's server time.
IDENTIFIER = String(128).with_variant(String(128, collation="C"), "postgresql")
SKILL_NAME = String(64).with_variant(String(64, collation="C"), "postgresql")

teacher_ratings = Table(
    "teacher_ratings",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("student_id", String(128), nullable=False),
    Column("skill", String(64), nullable=False),
    Column("rating", Float, nullable=False),
    Column("rated_at", DateTime(timezone=True), nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Index("ix_teacher_ratings_rated_at", "rated_at"),
    Index("ix_teacher_ratings_student_skill", "student_id", "skill"),
)

# The scores the service answered (all of them, or the share INFERENCE_PREDICTION_LOG_SHARE), written in
# batches off the request path; what teacher ratings are correlated with.
predictions = Table(
    "predictions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("student_id", String(128), nullable=False),
    Column("skill", String(64), nullable=False),
    Column("model_version", String(64), nullable=False),
    Column("score", Float, nullable=False),
    Column("predicted_at", DateTime(timezone=True), nullable=False),
    Index("ix_predictions_predicted_at", "predicted_at"),
    Index("ix_predictions_student_skill", "student_id", "skill"),
)


# Labelled feedback of the text families (the truth of a query's intent, of a pair's meaning), one row per item and
# version and variant that answered it when it arrived: live accuracy per version and variant. The texts are not
# kept. `satisfaction` (1-10, intent) is the caller's rating of the answer it was shown, on the rows of the variant
# that answered it (NULL on the others): a column added later, so a database of an older release gains it on start.
labelled_feedback = Table(
    "labelled_feedback",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("family", String(32), nullable=False),
    Column("model_version", String(64), nullable=False),
    Column("variant", String(32), nullable=False),
    Column("label", String(128), nullable=False),
    Column("predicted", String(128), nullable=False),
    Column("correct", Integer, nullable=False),  # 1 or 0: summed as the count of right answers
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("satisfaction", Integer, nullable=True),
    Index("ix_labelled_feedback_received_at", "received_at"),
)


# The batch scorer's output, "pre-fusion": one row per student, skill and distinct feature values of that skill
# (`features_hash`), holding the latest model's score of them. The primary key is the only index, which keeps
# the bulk upsert of millions of rows cheap; `features_updated_at` is the `updated_at` of the features scored,
# which an incremental run compares with the student's current one.
skill_assessments = Table(
    "skill_assessments",
    metadata,
    Column("student_id", IDENTIFIER, nullable=False),
    Column("skill", SKILL_NAME, nullable=False),
    Column("features_hash", BigInteger, nullable=False),
    Column("score", Float, nullable=False),
    Column("confidence", Float, nullable=False),
    Column("model_version", String(64), nullable=False),
    Column("features_updated_at", DateTime(timezone=True), nullable=False),
    Column("scored_at", DateTime(timezone=True), nullable=False),
    Column("run_id", Integer, nullable=False),
    PrimaryKeyConstraint("student_id", "skill", "features_hash", name="pk_skill_assessments"),
)

# One row per invocation of the batch scorer: what it did, how fast, and where it got to (`last_student_id`,
# committed with each chunk), which is where a rerun of the same mode and shard resumes. Its `status`:
RUNNING, SUCCEEDED, FAILED, INTERRUPTED = "running", "succeeded", "failed", "interrupted"
scoring_runs = Table(
    "scoring_runs",
    metadata,
    Column("run_id", Integer, primary_key=True, autoincrement=True),
    Column("mode", String(16), nullable=False),
    Column("shard_index", Integer, nullable=False),
    Column("shard_count", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("model_versions", JSON, nullable=False),
    Column("resumed_from", Integer, nullable=True),
    Column("worker", String(256), nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("heartbeat_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=True),
    Column("last_student_id", String(128), nullable=True),
    Column("students_pending", Integer, nullable=False, default=0),
    Column("students_read", Integer, nullable=False, default=0),
    Column("assessments_written", Integer, nullable=False, default=0),
    Column("assessments_unchanged", Integer, nullable=False, default=0),
    Column("items_failed", Integer, nullable=False, default=0),
    # Students left out because their updated_at is not a time this tool can read (infinite, after 9999).
    Column("students_skipped", Integer, nullable=False, default=0),
    Column("duration_s", Float, nullable=True),
    Column("scoring_s", Float, nullable=True),
    Column("students_per_s", Float, nullable=True),
    Column("assessments_per_s", Float, nullable=True),
    Column("error", Text, nullable=True),
    # When the students this run covers were last all read: its start, or for a resumed run the start of the run it
    # resumed (students before the checkpoint were read then). The next incremental run of the shard reads only the
    # students updated since (less INFERENCE_BATCH_LOOKBACK_S) instead of comparing every student's assessments.
    Column("features_watermark", DateTime(timezone=True), nullable=True),
    Index("ix_scoring_runs_mode_shard", "mode", "shard_index", "shard_count"),
)

# Items the batch scorer could not score (a bad feature row): recorded, never a crashed run. One row per student,
# skill and version of the features (`run_id` is the run that first found it), so a rerun records nothing new.
scoring_failures = Table(
    "scoring_failures",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", Integer, nullable=False),
    Column("student_id", IDENTIFIER, nullable=False),
    Column("skill", SKILL_NAME, nullable=False),
    Column("code", String(64), nullable=False),
    Column("message", Text, nullable=False),
    Column("features_updated_at", DateTime(timezone=True), nullable=False),
    Column("failed_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("student_id", "skill", "features_updated_at", name="uq_scoring_failures_item"),
    Index("ix_scoring_failures_run", "run_id"),
)


class shard_key_of(FunctionElement[int]):
    """`shard_key_of(column)` in SQL: the same number as `inference.sharding.shard_key` in Python."""

    type = BigInteger()
    inherit_cache = True
    name = "shard_key_of"


@compiles(shard_key_of, "postgresql")
def _shard_key_postgresql(element: shard_key_of, compiler: Any, **kw: Any) -> str:
    argument = compiler.process(element.clauses, **kw)
    return f"('x' || substr(md5({argument}), 1, {SHARD_KEY_HEX_DIGITS}))::bit({4 * SHARD_KEY_HEX_DIGITS})::bigint"


@compiles(shard_key_of, "sqlite")
def _shard_key_sqlite(element: shard_key_of, compiler: Any, **kw: Any) -> str:
    return f"shard_key({compiler.process(element.clauses, **kw)})"  # registered on every connection below


SCHEMA_LOCK_KEY = 7_302_114_907_551_019  # PostgreSQL advisory lock taken while the schema is created


# Rows a writer could not store because the database refused the row itself (a value it cannot hold), set aside
# with the reason instead of blocking the rows around them: one per row, the row as JSON (text made printable).
rejected_rows = Table(
    "rejected_rows",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("table_name", String(64), nullable=False),
    Column("reason", Text, nullable=False),
    Column("row", Text, nullable=False),
    Column("rejected_at", DateTime(timezone=True), nullable=False),
    Index("ix_rejected_rows_rejected_at", "rejected_at"),
)

DEFAULT_TIMEOUT_S = 5.0  # INFERENCE_DATABASE_TIMEOUT_S's default


@lru_cache(maxsize=8)
def engine_for(url: str, *, timeout_s: float = DEFAULT_TIMEOUT_S, statement_timeout_s: float | None = None) -> Engine:
    """One engine per URL, timeouts and process, with the schema created or brought up to date (idempotent).

    `timeout_s` bounds the wait for a connection to open (PostgreSQL: `connect_timeout`; SQLite: the wait for a
    writer's lock) and, on PostgreSQL, every statement (`statement_timeout`) unless `statement_timeout_s` says
    otherwise: a database that answers nothing (a black-holed host) fails a call in seconds, never hangs it."""
    options: dict[str, Any] = {"pool_pre_ping": True, "pool_timeout": timeout_s}
    if url.startswith("sqlite"):
        # Several worker processes write one file: wait for the lock instead of failing at once.
        options["connect_args"] = {"timeout": max(timeout_s, 30.0)}
    elif url.startswith("postgresql"):
        statement_ms = round(1000 * (statement_timeout_s if statement_timeout_s is not None else timeout_s))
        options["connect_args"] = {
            "connect_timeout": max(1, round(timeout_s)),
            "options": f"-c statement_timeout={statement_ms}",
        }
    engine = create_engine(url, **options)
    if url.startswith("sqlite"):

        @event.listens_for(engine, "connect")
        def _write_ahead_log(connection: Any, _: Any) -> None:
            cursor = connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()
            connection.create_function("shard_key", 1, shard_key, deterministic=True)

    with _schema_transaction(engine) as connection:
        metadata.create_all(connection)
        migrate(connection)
    return engine


class DeferredEngine:
    """The engine of `url`, opened (schema included) on first use, and tried again at the next use after a failure.

    The service starts without its database: scoring needs none, and the parts that do (teacher ratings,
    correlations, the prediction log) fail with a clear error until the database is back, instead of the
    workers failing to start in a loop.
    """

    def __init__(self, url: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.url = url
        self.timeout_s = timeout_s

    def open(self) -> Engine:
        return engine_for(self.url, timeout_s=self.timeout_s)  # cached once it succeeds; a failure is not cached

    def __getattr__(self, name: str) -> Any:
        return getattr(self.open(), name)


@contextmanager
def _schema_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction in which this process alone creates or updates the schema. A server's workers start together,
    and without it the losers of that race fail ("table ... already exists", or SQLite's "database is locked")."""
    if engine.dialect.name == "postgresql":
        with engine.begin() as connection:
            connection.execute(select(func.pg_advisory_xact_lock(SCHEMA_LOCK_KEY)))
            yield connection
        return
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        with engine.begin() as connection:
            yield connection
        return
    # flock on a file beside the database, never on the database itself: closing any descriptor of the database
    # file releases every POSIX lock this process holds on it, SQLite's own included (SQLite's documentation,
    # "How To Corrupt An SQLite Database File", 2.2), which let another process remove the write-ahead log under it.
    # Read-only is enough for flock: a lock file another user created (a tool run as root on the same volume) can
    # still be locked by the service's user.
    handle = os.open(f"{database}.schema-lock", os.O_RDONLY | os.O_CREAT, 0o666)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        with engine.begin() as connection:
            yield connection
    finally:
        os.close(handle)  # releases the flock


def migrate(connection: Connection, tables: Iterable[Table] | None = None) -> list[str]:
    """Bring `tables` (default: the tables above) that already exist up to their definition, where that is safe:
    add missing nullable columns (a feature new to the served models) and missing indexes. A missing NOT NULL
    column cannot be filled in: that is an error naming it. Returns the changes made (logged too)."""
    changes: list[str] = []
    inspector = inspect(connection)
    for table in metadata.sorted_tables if tables is None else tables:
        if not inspector.has_table(table.name):
            continue  # create_all makes it whole
        existing = {column["name"] for column in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name in existing:
                continue
            if not column.nullable:
                raise SchemaMismatch(
                    f"table {table.name} has no column {column.name} (NOT NULL) and it cannot be added to "
                    "existing rows; migrate the table by hand or use a new database"
                )
            # Both names quoted by the dialect: a feature's name may be any text (spaces, '/', quotes).
            name = connection.dialect.identifier_preparer.format_table(table)
            spec = CreateColumn(column).compile(dialect=connection.dialect)
            connection.exec_driver_sql(f"ALTER TABLE {name} ADD COLUMN {spec}")
            changes.append(f"added column {table.name}.{column.name}")
        indexes = {index["name"] for index in inspector.get_indexes(table.name)}
        for index in table.indexes:
            if index.name not in indexes:
                index.create(connection)
                changes.append(f"created index {index.name}")
    for change in changes:
        logger.info("database schema: %s", change)
    return changes


# The batch scorer's input: one row per student and one nullable column per feature, named as the feature (NULL:
# not measured, imputed at scoring like a feature left out of a request). Its columns are the features of the
# served skill models, which only the tools that read or write students know, so it is not in `metadata`: they
# build it from the feature names and bring the database's table up to it. Whoever writes features sets
# updated_at.
STUDENT_FEATURES = "student_features"
# The student table's own columns, and PostgreSQL's longest identifier (NAMEDATALEN - 1: it cuts longer ones, so two
# long features could become one column): the rules a feature name follows (the skills' schema reads them here).
STUDENT_KEY_COLUMNS = ("student_id", "updated_at")
MAX_IDENTIFIER_BYTES = 63
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)  # SQLite folds ASCII letters only


def student_features_table(feature_names: Sequence[str]) -> Table:
    """`student_features` with a nullable Float column for each of `feature_names`, in that order."""
    reserved = [name for name in feature_names if name in STUDENT_KEY_COLUMNS]
    if reserved:
        raise SchemaMismatch(
            f"{STUDENT_FEATURES}: a feature cannot be named {reserved[0]!r}, the name of the table's own column"
        )
    too_long = [name for name in feature_names if len(name.encode()) > MAX_IDENTIFIER_BYTES]
    if too_long:
        raise SchemaMismatch(
            f"{STUDENT_FEATURES}: feature {too_long[0]!r} is longer than a column name can be "
            f"({MAX_IDENTIFIER_BYTES} bytes in UTF-8)"
        )
    return Table(
        STUDENT_FEATURES,
        MetaData(),
        Column("student_id", IDENTIFIER, primary_key=True),
        *(Column(name, Float, nullable=True) for name in feature_names),
        Column("updated_at", DateTime(timezone=True), nullable=False),
        Index("ix_student_features_updated_at", "updated_at"),
    )


def ensure_student_features(engine: Engine, feature_names: Sequence[str]) -> Table:
    """`student_features_table(feature_names)`, created in the database when missing; when it exists, the feature
    columns it lacks are added (NULL in the rows already there: not measured) and other columns are left alone."""
    table = student_features_table(feature_names)
    if engine.dialect.name == "sqlite":
        folded: dict[str, str] = {}
        for name in feature_names:
            other = folded.setdefault(name.translate(_ASCII_LOWER), name)
            if other != name:
                raise SchemaMismatch(
                    f"{STUDENT_FEATURES}: features {other!r} and {name!r} differ only in case, and SQLite's column "
                    "names ignore case; rename one, or use PostgreSQL"
                )
    with _schema_transaction(engine) as connection:
        table.create(connection, checkfirst=True)
        migrate(connection, [table])
    return table
