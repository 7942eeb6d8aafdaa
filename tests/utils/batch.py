"""Helpers for batch scoring tests: load students, read back assessments, run the CLI as a real process."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Engine, func, select

from inference.batch.chunks import FEATURE_NAMES, score_chunk
from inference.batch.database import BatchDatabase
from inference.catalogue import SKILLS
from inference.scoring import SkillModel
from inference.storage import skill_assessments, student_features
from tests.utils.servers import PROJECT_ROOT


def feature_matrix(rows: Sequence[Mapping[str, float]]) -> np.ndarray:
    return np.array([[row.get(name, np.nan) for name in FEATURE_NAMES] for row in rows], dtype=np.float64)


def load_students(
    database: BatchDatabase, rows: Sequence[Mapping[str, float]], *, prefix: str = "s", updated_at=None
) -> list[str]:
    ids = [f"{prefix}-{index:06d}" for index in range(len(rows))]
    database.upsert_students(ids, feature_matrix(rows), updated_at=updated_at or datetime.now(UTC))
    return ids


def stored_assessments(engine: Engine) -> dict[tuple[str, str], Any]:
    """Every assessment keyed by (student_id, skill); fails when a student and skill has two rows."""
    with engine.connect() as connection:
        rows = connection.execute(select(skill_assessments)).all()
    keyed = {(row.student_id, row.skill): row for row in rows}
    assert len(keyed) == len(rows), "a student and skill has more than one assessment"
    return keyed


def expected_scores(engine: Engine, models: Mapping[str, SkillModel]) -> dict[tuple[str, str], float]:
    """Scores computed afresh, in-process, from the features stored now."""
    from inference.batch.chunks import FeatureChunk

    with engine.connect() as connection:
        rows = connection.execute(
            select(
                student_features.c.student_id,
                student_features.c.updated_at,
                *(student_features.c[name] for name in FEATURE_NAMES),
            ).order_by(student_features.c.student_id)
        ).all()
    scored = score_chunk(FeatureChunk.from_rows(rows), models)
    return {
        (student_id, skill): float(scored.scores[row, column])
        for row, student_id in enumerate(scored.chunk.student_ids)
        for column, skill in enumerate(SKILLS)
        if scored.scored[row, column]
    }


def count_rows(engine: Engine, table: Any) -> int:
    with engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(table)).scalar_one())


def batch_command(
    *args: str,
    database_url: str,
    log: Path | None = None,
    env: Mapping[str, str] | None = None,
    **popen: Any,
) -> subprocess.Popen[bytes]:
    """`python -m inference.batch ARGS` as a real process on `database_url`, the session's model store; `env`
    adds or overrides settings (INFERENCE_BATCH_RETRIES=...)."""
    full_env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "INFERENCE_SKILLS_VERSION": "v1.0.0",
        "INFERENCE_BATCH_PROGRESS_INTERVAL_S": "0.5",
        **(env or {}),
    }
    output = log.open("ab") if log is not None else subprocess.PIPE
    return subprocess.Popen(
        [sys.executable, "-m", "inference.batch", *args],
        cwd=PROJECT_ROOT,
        env=full_env,
        stdout=output,
        stderr=subprocess.STDOUT,
        **popen,
    )


def run_batch(*args: str, database_url: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    process = batch_command(*args, database_url=database_url)
    output, _ = process.communicate(timeout=timeout)
    return subprocess.CompletedProcess(process.args, process.returncode, output.decode(errors="replace"), "")
