"""The database: SQLAlchemy Core tables on `DATABASE_URL` (a SQLite file by default, PostgreSQL in production),
created by the service and the tools themselves, and the engine that reaches them."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    event,
)

metadata = MetaData()

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


@lru_cache(maxsize=8)
def engine_for(url: str) -> Engine:
    """One engine per URL and process, with the schema created (idempotent)."""
    options: dict[str, Any] = {"pool_pre_ping": True}
    if url.startswith("sqlite"):
        # Several worker processes write one file: wait for the lock instead of failing at once.
        options["connect_args"] = {"timeout": 30}
    engine = create_engine(url, **options)
    if url.startswith("sqlite"):

        @event.listens_for(engine, "connect")
        def _write_ahead_log(connection: Any, _: Any) -> None:
            cursor = connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

    metadata.create_all(engine)
    return engine
