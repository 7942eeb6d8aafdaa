"""Ground truth for the text families: labelled feedback (a query's true intent, whether two texts truly mean the
same), answered on arrival by every loaded version and intent variant and stored as right or wrong, so that live
accuracy is known per version and variant, on the same items for all of them, and the dual-mode requirement's
go/no-go rule can be read off it: the ensemble goes ahead when it beats classic by more than 10%."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, func, select

from inference.errors import BatchTooLarge, InvalidRequest
from inference.families.intent.variants import CLASSIC, ENSEMBLE
from inference.monitoring.objectives import ENSEMBLE_GO_IMPROVEMENT
from inference.monitoring.writes import WriteResult, insert_rows
from inference.schemas import MAX_RATINGS
from inference.storage import labelled_feedback


@dataclass(frozen=True)
class Accuracy:
    family: str
    model_version: str
    variant: str
    items: int
    accuracy: float | None  # None below the minimum of items


@dataclass(frozen=True)
class Decision:
    model_version: str
    classic_accuracy: float | None
    ensemble_accuracy: float | None
    improvement: float | None
    required: float
    decision: str


def store_feedback(engine: Engine, rows: Sequence[dict[str, object]]) -> WriteResult:
    """Insert labelled feedback rows in one transaction: how many were stored, and the ones the database refused
    for their data (kept in rejected_rows; the others are stored all the same). Any other database error is raised
    with nothing stored."""
    return insert_rows(engine, labelled_feedback, rows)


def feedback_accuracy(engine: Engine, *, window_days: float, min_items: int) -> list[Accuracy]:
    """Per family, version and variant: the share of the labelled items received in the window it answered right."""
    since = datetime.now(UTC) - timedelta(days=window_days)
    query = (
        select(
            labelled_feedback.c.family,
            labelled_feedback.c.model_version,
            labelled_feedback.c.variant,
            func.count(),
            func.sum(labelled_feedback.c.correct),
        )
        .where(labelled_feedback.c.received_at >= since)
        .group_by(labelled_feedback.c.family, labelled_feedback.c.model_version, labelled_feedback.c.variant)
        .order_by(labelled_feedback.c.family, labelled_feedback.c.model_version, labelled_feedback.c.variant)
    )
    with engine.connect() as connection:
        rows = connection.execute(query).all()
    return [
        Accuracy(
            family, version, variant, int(items), round(int(right) / int(items), 4) if items >= min_items else None
        )
        for family, version, variant, items, right in rows
    ]


def ensemble_decisions(accuracies: Sequence[Accuracy], *, required: float = ENSEMBLE_GO_IMPROVEMENT) -> list[Decision]:
    """The dual-mode requirement's rule per intent version: go when the ensemble's accuracy beats classic's by more
    than `required` (relative), no-go otherwise; not enough feedback while either has too few items."""
    by_version: dict[str, dict[str, float | None]] = {}
    for entry in accuracies:
        if entry.family == "intent":
            by_version.setdefault(entry.model_version, {})[entry.variant] = entry.accuracy
    decisions = []
    for version, found in sorted(by_version.items()):
        classic, ensemble = found.get(CLASSIC), found.get(ENSEMBLE)
        if classic is None or ensemble is None:
            decisions.append(Decision(version, classic, ensemble, None, required, "not enough feedback"))
            continue
        improvement = round((ensemble - classic) / classic, 4) if classic > 0 else None
        go = improvement is not None and improvement > required
        decisions.append(Decision(version, classic, ensemble, improvement, required, "go" if go else "no-go"))
    return decisions


def check_count(count: int) -> None:
    """1 to MAX_RATINGS labelled items in a request."""
    if count < 1:
        raise InvalidRequest("items: must hold at least 1 item")
    if count > MAX_RATINGS:
        raise BatchTooLarge(f"items: at most {MAX_RATINGS} items per request, got {count}")


def feedback_row(
    family: str, version: str, variant: str, label: str, predicted: str, received: datetime
) -> dict[str, object]:
    return {
        "family": family,
        "model_version": version,
        "variant": variant,
        "label": label,
        "predicted": predicted,
        "correct": int(label == predicted),
        "received_at": received,
    }
