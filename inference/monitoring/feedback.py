"""Ground truth for the text families: labelled feedback (a query's true intent, whether two texts truly mean the
same), answered on arrival by every loaded version and intent variant and stored as right or wrong, so that live
accuracy is known per version and variant, on the same items for all of them, and the dual-mode requirement's
go/no-go rule can be read off it: the ensemble goes ahead when it beats classic by more than 10%. An intent item may
carry the caller's satisfaction with the answer it was shown (`RatedAnswer`), stored on the rows of the variant that
gave it: the mean per version and variant is the go/no-go matrix's satisfaction (`inference.monitoring.gonogo`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, func, select

from inference.errors import BatchTooLarge, InvalidRequest
from inference.families.intent.variants import CLASSIC, ENSEMBLE, VARIANTS
from inference.monitoring.objectives import ENSEMBLE_GO_IMPROVEMENT
from inference.monitoring.writes import WriteResult, insert_rows
from inference.schemas import MAX_RATINGS, RatedAnswer
from inference.storage import labelled_feedback


@dataclass(frozen=True)
class Accuracy:
    family: str
    model_version: str
    variant: str
    items: int
    accuracy: float | None  # None below the minimum of items
    rated: int = 0  # items whose caller, shown this variant's answer, said how satisfied it was
    satisfaction: float | None = None  # their mean (1-10); None below the minimum of items


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
    """Per family, version and variant: the share of the labelled items received in the window it answered right,
    and the mean satisfaction of the callers shown its answer (each from `min_items` items on)."""
    since = datetime.now(UTC) - timedelta(days=window_days)
    query = (
        select(
            labelled_feedback.c.family,
            labelled_feedback.c.model_version,
            labelled_feedback.c.variant,
            func.count(),
            func.sum(labelled_feedback.c.correct),
            func.count(labelled_feedback.c.satisfaction),
            func.avg(labelled_feedback.c.satisfaction),
        )
        .where(labelled_feedback.c.received_at >= since)
        .group_by(labelled_feedback.c.family, labelled_feedback.c.model_version, labelled_feedback.c.variant)
        .order_by(labelled_feedback.c.family, labelled_feedback.c.model_version, labelled_feedback.c.variant)
    )
    with engine.connect() as connection:
        rows = connection.execute(query).all()
    return [
        Accuracy(
            family,
            version,
            variant,
            int(items),
            round(int(right) / int(items), 4) if items >= min_items else None,
            int(rated),
            round(float(mean), 4) if rated >= min_items else None,  # PostgreSQL's avg is a Decimal
        )
        for family, version, variant, items, right, rated, mean in rows
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


def check_rated(items: Sequence[object]) -> None:
    """A satisfaction is the rating of one variant's answer: the item names the variant (`RatedAnswer`)."""
    for index, item in enumerate(items):
        if isinstance(item, RatedAnswer) and item.satisfaction is not None and item.variant is None:
            raise InvalidRequest(
                f"items[{index}].variant: required with satisfaction: the variant whose answer the caller was shown "
                f"(one of {', '.join(VARIANTS)})"
            )


def satisfaction_of(item: object, variant: str) -> int | None:
    """The caller's satisfaction on the row of the variant that answered it; None on the other variants' rows."""
    if isinstance(item, RatedAnswer) and item.variant == variant:
        return item.satisfaction
    return None


def feedback_row(
    family: str,
    version: str,
    variant: str,
    label: str,
    predicted: str,
    received: datetime,
    *,
    satisfaction: int | None = None,
) -> dict[str, object]:
    return {
        "family": family,
        "model_version": version,
        "variant": variant,
        "label": label,
        "predicted": predicted,
        "correct": int(label == predicted),
        "received_at": received,
        "satisfaction": satisfaction,
    }
