"""A synthetic student population in `student_features`, for demos and benchmarks: seeded, chunked, upserted.

Students are `student-0000000`, `student-0000001`, ...; a rerun with another seed gives the same students new
feature values (and a new `updated_at`), and `share` below 1 changes only that share of them, which is how an
incremental run is demonstrated.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np

from inference.batch.database import BatchDatabase
from inference.batch.progress import Progress
from inference.synthetic import generate_students

ID_PREFIX = "student"


def student_id(index: int, population: int) -> str:
    return f"{ID_PREFIX}-{index:0{max(7, len(str(population - 1)))}d}"


def load_synthetic_students(
    database: BatchDatabase,
    *,
    students: int,
    seed: int,
    share: float = 1.0,
    chunk_size: int = 50_000,
    progress_interval_s: float = 10.0,
) -> int:
    """Write (or rewrite) students 0..`students`-1, or a random `share` of them; returns how many were written."""
    if students < 1:
        raise ValueError(f"students: expected at least 1, got {students}")
    if not 0 < share <= 1:
        raise ValueError(f"share: expected a number in (0, 1], got {share}")
    chooser = np.random.default_rng([seed, 1])
    progress = Progress(total=round(students * share), unit="students", interval_s=progress_interval_s)
    updated_at = datetime.now(UTC)
    written = 0
    for chunk_index, start in enumerate(range(0, students, chunk_size)):
        indices = np.arange(start, min(students, start + chunk_size))
        if share < 1:
            indices = indices[chooser.random(len(indices)) < share]
        if not len(indices):
            continue
        sample = generate_students(len(indices), seed=seed * 100_003 + chunk_index)
        ids = [student_id(index, students) for index in indices.tolist()]
        database.upsert_students(ids, sample.features, updated_at=updated_at)
        written += len(ids)
        progress.advance(len(ids))
    database.refresh_statistics()
    return written
