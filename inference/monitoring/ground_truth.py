"""Ground truth: teacher ratings stored beside the scores the service gave, and the Pearson correlation between
the two per skill and model version over a window, with an alert condition below a threshold."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
from sqlalchemy import Engine, func, select

from inference.logs import LOGGER_NAME, EveryInterval
from inference.monitoring.metrics import count_rows_dropped
from inference.monitoring.writes import WriteResult, insert_rows
from inference.storage import predictions, skill_assessments, teacher_ratings

logger = logging.getLogger(LOGGER_NAME)


@dataclass(frozen=True)
class Correlation:
    skill: str
    model_version: str
    pairs: int
    pearson_r: float | None  # None below `min_pairs`, or when either side has no variance
    alert: bool
    source: str = "served"  # served: the scores the API gave; nightly: the batch scorer's skill_assessments


def store_ratings(engine: Engine, rows: Sequence[dict[str, object]]) -> WriteResult:
    """Insert teacher ratings (student_id, skill, rating, rated_at) in one transaction: how many were stored, and
    the ones the database refused for their data (kept in rejected_rows; the others are stored all the same). Any
    other database error is raised with nothing stored."""
    received = datetime.now(UTC)
    return insert_rows(engine, teacher_ratings, [{**row, "received_at": received} for row in rows])


def correlations(
    engine: Engine, *, window_days: float, threshold: float, min_pairs: int, now: datetime | None = None
) -> list[Correlation]:
    """Per skill and model version, for the scores the API served and for the nightly batch's assessments: the
    latest score each student got from that version in the window against the student's latest teacher rating in
    the window (the one rated last, whenever it was received)."""
    since = (now or datetime.now(UTC)) - timedelta(days=window_days)
    # Ratings may arrive in any order (a school sends last term's after this week's): the latest is by rated_at.
    ranked_ratings = (
        select(
            teacher_ratings.c.student_id,
            teacher_ratings.c.skill,
            teacher_ratings.c.rating,
            func.row_number()
            .over(
                partition_by=(teacher_ratings.c.student_id, teacher_ratings.c.skill),
                order_by=(teacher_ratings.c.rated_at.desc(), teacher_ratings.c.id.desc()),
            )
            .label("newest_first"),
        )
        .where(teacher_ratings.c.rated_at >= since)
        .subquery()
    )
    latest_rating = (
        select(ranked_ratings.c.student_id, ranked_ratings.c.skill, ranked_ratings.c.rating)
        .where(ranked_ratings.c.newest_first == 1)
        .subquery()
    )
    # Only the predictions of rated students are read (through the (student_id, skill) index): the log holds
    # every score served, most of them of students nobody rated, and reading them all cost 0.6 s per worker
    # and round at 150,000 logged scores.
    rated = predictions.join(
        latest_rating,
        (predictions.c.student_id == latest_rating.c.student_id) & (predictions.c.skill == latest_rating.c.skill),
    )
    # Each worker writes its scores in the order it gave them, a second's worth at a time: the highest id is the
    # latest score (between workers, to within that second).
    latest_prediction = (
        select(func.max(predictions.c.id))
        .select_from(rated)
        .where(predictions.c.predicted_at >= since)
        .group_by(predictions.c.student_id, predictions.c.skill, predictions.c.model_version)
    )
    served = (
        select(predictions.c.skill, predictions.c.model_version, predictions.c.score, latest_rating.c.rating)
        .select_from(rated)
        .where(predictions.c.id.in_(latest_prediction))
    )
    # The nightly scores: each rated student's latest assessment per skill and version in the window.
    ranked_assessments = (
        select(
            skill_assessments.c.skill,
            skill_assessments.c.model_version,
            skill_assessments.c.score,
            latest_rating.c.rating,
            func.row_number()
            .over(
                partition_by=(
                    skill_assessments.c.student_id,
                    skill_assessments.c.skill,
                    skill_assessments.c.model_version,
                ),
                order_by=skill_assessments.c.scored_at.desc(),
            )
            .label("newest_first"),
        )
        .select_from(
            skill_assessments.join(
                latest_rating,
                (skill_assessments.c.student_id == latest_rating.c.student_id)
                & (skill_assessments.c.skill == latest_rating.c.skill),
            )
        )
        .where(skill_assessments.c.scored_at >= since)
        .subquery()
    )
    nightly = select(
        ranked_assessments.c.skill,
        ranked_assessments.c.model_version,
        ranked_assessments.c.score,
        ranked_assessments.c.rating,
    ).where(ranked_assessments.c.newest_first == 1)
    grouped: dict[tuple[str, str, str], list[tuple[float, float]]] = {}
    with engine.connect() as connection:
        for source, query in (("served", served), ("nightly", nightly)):
            for skill, version, score, rating in connection.execute(query):
                grouped.setdefault((source, skill, version), []).append((score, rating))
    results = []
    for (source, skill, version), pairs in sorted(
        grouped.items(), key=lambda item: (item[0][1], item[0][2], item[0][0] != "served")
    ):
        r = pearson(np.array(pairs)) if len(pairs) >= min_pairs else None
        results.append(Correlation(skill, version, len(pairs), r, alert=r is not None and r < threshold, source=source))
    return results


def pearson(pairs: np.ndarray) -> float | None:
    scores, ratings = pairs[:, 0], pairs[:, 1]
    if scores.std() == 0 or ratings.std() == 0:
        return None
    return round(float(np.corrcoef(scores, ratings)[0, 1]), 4)


class PredictionLog:
    """Scores to remember, buffered on the request path and written in batches by `flush` (called on a timer,
    off the event loop). It holds at most `capacity` rows, those being written included; a row that does not fit
    is dropped, counted in `dropped` and in inference_rows_dropped_total{reason="buffer_full"}, and reported in the
    log (at most once a minute). A row the database refuses for its data is set aside (`insert_rows`), never
    retried: it would hold up every row after it."""

    def __init__(self, engine: Engine | None, *, capacity: int = 50_000) -> None:
        self.engine = engine
        self.capacity = capacity
        self.dropped = 0
        self._rows: list[dict[str, object]] = []
        self._writing = 0  # rows taken by a flush that has not finished: they come back if it fails
        self._lock = threading.Lock()
        self._log = EveryInterval(60.0)

    def add(self, student_id: str, skill: str, version: str, score: float) -> None:
        if self.engine is None:
            return
        with self._lock:
            if len(self._rows) + self._writing >= self.capacity:
                self._count_dropped()
                return
            self._rows.append(
                {
                    "student_id": student_id,
                    "skill": skill,
                    "model_version": version,
                    "score": score,
                    "predicted_at": datetime.now(UTC),
                }
            )

    def flush(self) -> int:
        """Write the rows held; returns how many were stored. Rows the database refuses for their data are set
        aside and the others stored; on any other failure all of them are held again, before the newer ones."""
        if self.engine is None:
            return 0
        with self._lock:
            rows, self._rows = self._rows, []
            self._writing += len(rows)
        if not rows:
            return 0
        try:
            result = insert_rows(self.engine, predictions, rows)
        except Exception:
            with self._lock:  # they were counted against the capacity while written, so they fit again
                self._rows = rows + self._rows
                self._writing -= len(rows)
            raise
        with self._lock:
            self._writing -= len(rows)
        return result.stored

    def _count_dropped(self) -> None:
        self.dropped += 1
        count_rows_dropped(predictions.name, "buffer_full")
        if self._log.allow() is not None:
            logger.warning("prediction log full (%d rows): %d predictions dropped so far", self.capacity, self.dropped)
