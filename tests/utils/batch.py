"""Helpers for batch scoring tests: load students, read back assessments, run the CLIs as real processes."""

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

from inference.batch.chunks import FeatureChunk, score_chunk, served_feature_names
from inference.batch.database import BatchDatabase
from inference.families.skills.scoring import SkillModel
from inference.storage import engine_for, skill_assessments, student_features_table
from tests.utils.servers import PROJECT_ROOT
from train.data.population import DEMO_FEATURE_NAMES


def demo_database(url: str) -> BatchDatabase:
    """The database of `url` for the demo models: `student_features` with the demo catalogue's columns."""
    return BatchDatabase(engine_for(url), DEMO_FEATURE_NAMES)


def feature_matrix(
    rows: Sequence[Mapping[str, float]], feature_names: Sequence[str] = DEMO_FEATURE_NAMES
) -> np.ndarray:
    return np.array([[row.get(name, np.nan) for name in feature_names] for row in rows], dtype=np.float64)


def load_students(
    database: BatchDatabase, rows: Sequence[Mapping[str, float]], *, prefix: str = "s", updated_at=None
) -> list[str]:
    """Students `{prefix}-000000`.. with the features of `rows` (a feature left out: NULL)."""
    ids = [f"{prefix}-{index:06d}" for index in range(len(rows))]
    values = feature_matrix(rows, database.feature_names)
    database.upsert_students(ids, values, updated_at=updated_at or datetime.now(UTC))
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
    names = served_feature_names(models)
    features = student_features_table(names).c
    with engine.connect() as connection:
        rows = connection.execute(
            select(features.student_id, features.updated_at, *(features[name] for name in names)).order_by(
                features.student_id
            )
        ).all()
    scored = score_chunk(FeatureChunk.from_rows(rows, names), models)
    return {
        (student_id, skill): float(scored.scores[row, column])
        for row, student_id in enumerate(scored.chunk.student_ids)
        for column, skill in enumerate(scored.skills)
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


def run_batch(
    *args: str, database_url: str, timeout: float = 300, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    process = batch_command(*args, database_url=database_url, env=env)
    output, _ = process.communicate(timeout=timeout)
    return subprocess.CompletedProcess(process.args, process.returncode, output.decode(errors="replace"), "")


def run_population(*args: str, database_url: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """`python -m train.data.population ARGS` on `database_url`: demo students into student_features."""
    return subprocess.run(
        [sys.executable, "-m", "train.data.population", *args],
        cwd=PROJECT_ROOT,
        env={**os.environ, "DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
