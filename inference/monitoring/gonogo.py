"""The dual-mode requirement's go/no-go matrix: whether the intent ensemble goes to full production. Four criteria,
each scored against its minimum and target and weighted (`GO_NO_GO_CRITERIA`); the ensemble proceeds when the
weighted score is above `GO_NO_GO_PROCEED_ABOVE` (0.75), and holds otherwise. Plain functions over the measured
values; where each value comes from:

- accuracy: (ensemble - classic) / classic accuracy on the same labelled feedback, per intent version over the
  feedback window (the database: every worker's posts);
- satisfaction: the mean `satisfaction` (1-10) callers shown the ensemble's answer sent with their labelled
  feedback, per version over the same window;
- cost: the ensemble's cost per request over classic's, relative (ensemble / classic - 1), from this worker's
  `CostMeter` since it started (the family's, shared by its versions);
- stability: of the answers this worker chose the ensemble for, the share the ensemble gave itself rather than a
  fallback (`IntentScorer.ensemble_outcomes`, per version since it loaded).

A criterion without data (too few labelled or rated items, a variant with no request charged, the ensemble never
chosen) has no score; the matrix then has no total and its decision is `not enough data`: a missing criterion is
neither scored 0 nor dropped from the weights, since either would decide on data nobody has.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from inference.families.intent.variants import CLASSIC, ENSEMBLE
from inference.monitoring.cost import Charge
from inference.monitoring.feedback import Accuracy, ensemble_decisions
from inference.monitoring.objectives import GO_NO_GO_CRITERIA, GO_NO_GO_PROCEED_ABOVE, GoNoGoCriterion

PROCEED, HOLD, NOT_ENOUGH_DATA = "proceed", "hold", "not enough data"
ANSWERED = "answered"  # the key of `ensemble_outcomes` for an answer the ensemble gave; the others are fallbacks
FAMILY = "intent"


@dataclass(frozen=True)
class CriterionScore:
    name: str
    value: float | None  # None: no data
    minimum: float
    target: float
    weight: float
    score: float | None  # 0-1; None without a value


@dataclass(frozen=True)
class Matrix:
    model_version: str
    criteria: tuple[CriterionScore, ...]
    score: float | None  # the weighted sum; None while a criterion has no data
    proceed_above: float
    decision: str  # PROCEED, HOLD or NOT_ENOUGH_DATA


def criterion_score(value: float, *, minimum: float, target: float) -> float:
    """0 up to the minimum, 1 from the target on, linear between; a target below the minimum means lower is
    better (a cost increase), which the same line gives."""
    return min(max((value - minimum) / (target - minimum), 0.0), 1.0)


def go_no_go(
    model_version: str,
    measured: Mapping[str, float | None],
    *,
    criteria: Sequence[GoNoGoCriterion] = GO_NO_GO_CRITERIA,
    proceed_above: float = GO_NO_GO_PROCEED_ABOVE,
) -> Matrix:
    """The matrix of one version from each criterion's measured value (by criterion name; absent or None: no
    data)."""
    scored = []
    for criterion in criteria:
        value = measured.get(criterion.name)
        score = (
            None
            if value is None
            else round(criterion_score(value, minimum=criterion.minimum, target=criterion.target), 4)
        )
        scored.append(
            CriterionScore(criterion.name, value, criterion.minimum, criterion.target, criterion.weight, score)
        )
    weighted = [(entry.weight, entry.score) for entry in scored if entry.score is not None]
    if len(weighted) < len(scored):
        return Matrix(model_version, tuple(scored), None, proceed_above, NOT_ENOUGH_DATA)
    total = round(sum(weight * score for weight, score in weighted), 4)  # 0.75 exactly is not above it
    return Matrix(model_version, tuple(scored), total, proceed_above, PROCEED if total > proceed_above else HOLD)


def cost_increase(charges: Iterable[Charge]) -> float | None:
    """The ensemble's cost per request over classic's, relative; None until both have requests charged."""
    per_request = {
        charge.segment: charge.dollars / charge.requests
        for charge in charges
        if charge.family == FAMILY and charge.requests > 0
    }
    classic, ensemble = per_request.get(CLASSIC), per_request.get(ENSEMBLE)
    if classic is None or ensemble is None or classic <= 0:
        return None
    return round(ensemble / classic - 1, 4)


def availability(outcomes: Mapping[str, int] | None) -> float | None:
    """Of the answers the ensemble was chosen for, the share it gave itself; None when it was never chosen."""
    total = sum(outcomes.values()) if outcomes else 0
    if not outcomes or total <= 0:
        return None
    return round(outcomes.get(ANSWERED, 0) / total, 6)


def ensemble_matrices(
    accuracies: Sequence[Accuracy],
    *,
    cost_increase: float | None,
    outcomes: Mapping[str, Mapping[str, int] | None],
) -> list[Matrix]:
    """The matrix of every intent version with labelled feedback or loaded (`outcomes`: each loaded version's
    `ensemble_outcomes`, None where its scorer keeps none)."""
    improvements = {decision.model_version: decision.improvement for decision in ensemble_decisions(accuracies)}
    satisfaction = {
        entry.model_version: entry.satisfaction
        for entry in accuracies
        if entry.family == FAMILY and entry.variant == ENSEMBLE
    }
    return [
        go_no_go(
            version,
            {
                "accuracy": improvements.get(version),
                "satisfaction": satisfaction.get(version),
                "cost": cost_increase,
                "stability": availability(outcomes.get(version)),
            },
        )
        for version in sorted(set(improvements) | set(outcomes))
    ]
