"""The nightly batch scorer's health for the alerts, read from its own record of runs (`scoring_runs`, in the
database the service shares with it): when a run of each mode last succeeded, whether the latest one failed, and
how long the latest success took against the usual. The scorer is a job that ends, so the service exports these
gauges for it; Prometheus judges them (k8s/monitoring/rules.py: failed, late, slower than usual)."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine, select

from inference.storage import FAILED, INTERRUPTED, SUCCEEDED, scoring_runs

USUAL_RUNS = 7  # the usual duration: the median of this many successful runs before the latest
MIN_USUAL_RUNS = 3  # fewer than this: no usual duration yet, so no "slower than usual"
LOOKED_AT = 200  # finished runs read per look, newest first


@dataclass(frozen=True)
class BatchHealth:
    mode: str
    last_success_at: datetime | None
    last_run_failed: bool
    last_duration_s: float | None
    usual_duration_s: float | None


def batch_health(engine: Engine) -> list[BatchHealth]:
    """Per mode (full, incremental), from the latest finished runs (every shard's run counts as one)."""
    query = (
        select(scoring_runs.c.mode, scoring_runs.c.status, scoring_runs.c.finished_at, scoring_runs.c.duration_s)
        .where(scoring_runs.c.finished_at.is_not(None))
        .order_by(scoring_runs.c.finished_at.desc(), scoring_runs.c.run_id.desc())
        .limit(LOOKED_AT)
    )
    with engine.connect() as connection:
        rows = connection.execute(query).all()
    by_mode: dict[str, list[tuple[str, datetime, float | None]]] = {}
    for mode, status, finished_at, duration in rows:
        by_mode.setdefault(mode, []).append((status, _utc(finished_at), duration))
    found = []
    for mode, runs in sorted(by_mode.items()):
        successes = [(finished_at, duration) for status, finished_at, duration in runs if status == SUCCEEDED]
        earlier = [duration for _, duration in successes[1 : 1 + USUAL_RUNS] if duration is not None]
        found.append(
            BatchHealth(
                mode=mode,
                last_success_at=successes[0][0] if successes else None,
                last_run_failed=runs[0][0] in (FAILED, INTERRUPTED),
                last_duration_s=successes[0][1] if successes else None,
                usual_duration_s=statistics.median(earlier) if len(earlier) >= MIN_USUAL_RUNS else None,
            )
        )
    return found


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
