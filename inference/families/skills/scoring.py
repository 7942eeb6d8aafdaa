"""Scoring over numpy arrays: scaled features in, high-skill probabilities and confidences out. Pure compute."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import xgboost as xgb

from inference.families.skills.compiled import Compiled
from inference.families.skills.schema import FeatureSchema

HIGH_SKILL_CLASS = 1
TOP_IMPORTANCES = 5
SKILL_MODEL_PREFIX = "skill-"


@dataclass(frozen=True)
class SkillModel:
    """One skill's loaded model: its feature schema, its scaler's parameters and its booster, in the model's
    column order."""

    skill: str
    version: str
    schema: FeatureSchema
    booster: xgb.Booster
    mean: np.ndarray
    scale: np.ndarray
    metadata: Mapping[str, Any] = field(default_factory=dict)
    feature_importance: tuple[tuple[str, float], ...] = ()
    compiled: Compiled | None = None  # the ONNX Runtime form, when it loaded and equals the booster
    # From the schema, as arrays for the request path.
    feature_names: tuple[str, ...] = field(init=False)
    imputation_defaults: np.ndarray = field(init=False)
    minimum: np.ndarray = field(init=False)
    maximum: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "feature_names", self.schema.names)
        object.__setattr__(self, "imputation_defaults", self.schema.defaults())
        object.__setattr__(self, "minimum", self.schema.minimum())
        object.__setattr__(self, "maximum", self.schema.maximum())

    @property
    def store_name(self) -> str:
        return skill_model_name(self.skill)


def skill_model_name(skill: str) -> str:
    """The model store name of a skill's model."""
    return f"{SKILL_MODEL_PREFIX}{skill}"


@dataclass(frozen=True)
class Scores:
    score: np.ndarray  # P(high skill), clipped to [0, 1]
    confidence: np.ndarray  # |2 * score - 1| = tanh(|margin| / 2), in [0, 1]
    margin: np.ndarray  # log-odds from the booster


def score_rows(model: SkillModel, rows: np.ndarray, *, compiled: bool = True) -> Scores:
    """Score imputed rows (n, n_features) in the model's feature order.

    Scaling is plain numpy (much cheaper per call than `StandardScaler.transform`). The rows go through the model's
    compiled form when it has one (ONNX Runtime, checked equal to the booster at load) and `compiled` is true;
    otherwise the booster is asked for margins with `inplace_predict`, XGBoost's cheapest prediction path. Either
    way the probability is what `predict_proba` computes for a `binary:logistic` model; the two paths agree to
    float32 precision, so a caller sticks to one (`inference.families.skills.compiled`).
    """
    scaled = ((rows - model.mean) / model.scale).astype(np.float32, copy=False)
    runtime = model.compiled.booster if compiled and model.compiled is not None else None
    if runtime is not None:
        score = np.clip(runtime.probabilities(scaled), 0.0, 1.0)
        with np.errstate(divide="ignore"):  # a probability of exactly 0 or 1 in float32 has an infinite margin
            margin = np.log(score) - np.log1p(-score)
        return Scores(score=score, confidence=np.abs(2.0 * score - 1.0), margin=margin)
    margin = np.asarray(model.booster.inplace_predict(scaled, predict_type="margin"), dtype=np.float64)
    score = np.clip(1.0 / (1.0 + np.exp(-margin)), 0.0, 1.0)
    return Scores(score=score, confidence=np.abs(2.0 * score - 1.0), margin=margin)


def top_importances(
    booster: xgb.Booster, feature_names: tuple[str, ...], k: int = TOP_IMPORTANCES
) -> tuple[tuple[str, float], ...]:
    """The booster's `k` largest gain importances, normalised to sum to 1 over all features, descending."""
    gains = booster.get_score(importance_type="gain")
    # Gain importances are one number per feature (xgboost types every importance as float | list[float]).
    by_name = {_feature_name(key, feature_names): float(cast(float, value)) for key, value in gains.items()}
    total = sum(by_name.values()) or 1.0
    ranked = sorted(
        ((name, by_name.get(name, 0.0) / total) for name in feature_names), key=lambda item: (-item[1], item[0])
    )
    return tuple(ranked[:k])


def _feature_name(key: str, feature_names: tuple[str, ...]) -> str:
    # Boosters trained on bare numpy arrays name their columns f0, f1, ...
    if key in feature_names:
        return key
    if key.startswith("f") and key[1:].isdigit():
        return feature_names[int(key[1:])]
    raise ValueError(f"booster reports importance for unknown feature {key!r}")


def contributions(model: SkillModel, rows: np.ndarray) -> np.ndarray:
    """TreeSHAP contributions of each feature to each row's margin, (n, n_features + 1), the last column the bias
    (the expected margin). Computed on the scaled inputs the booster sees; the scaling is per feature, so column
    i is feature i. Each row sums to its margin (to float32 precision)."""
    scaled = ((rows - model.mean) / model.scale).astype(np.float32, copy=False)
    matrix = xgb.DMatrix(scaled, feature_names=model.booster.feature_names, nthread=1)
    return np.asarray(model.booster.predict(matrix, pred_contribs=True), dtype=np.float64)


@dataclass(frozen=True)
class SkillRow:
    """One prepared row and the model that will score it (rows carry their model, so a batch spanning a
    model reload still scores each row with the version that prepared it); `explain` asks for its contributions."""

    model: SkillModel
    values: np.ndarray
    explain: bool = False


@dataclass(frozen=True)
class RowScore:
    score: float
    confidence: float
    margin: float = 0.0
    contributions: np.ndarray | None = None  # (n_features + 1,), bias last: only for rows that asked


def score_skill_rows(rows: Sequence[SkillRow]) -> list[RowScore]:
    """Score rows of mixed skills: one vectorised call per model, results in the rows' order; the contributions
    of the rows that ask for them in one more call per model."""
    positions: dict[int, list[int]] = defaultdict(list)
    for position, row in enumerate(rows):
        positions[id(row.model)].append(position)
    results: list[RowScore | None] = [None] * len(rows)
    for indices in positions.values():
        model = rows[indices[0]].model
        values = np.stack([rows[i].values for i in indices])
        scores = score_rows(model, values)
        explained = [offset for offset, index in enumerate(indices) if rows[index].explain]
        explanation_of = dict(zip(explained, contributions(model, values[explained]), strict=True)) if explained else {}
        for offset, index in enumerate(indices):
            explained_row = explanation_of.get(offset)
            # An explained row's margin is its contributions' sum (the booster's margin), whichever path scored it.
            margin = float(scores.margin[offset]) if explained_row is None else float(explained_row.sum())
            results[index] = RowScore(
                float(scores.score[offset]), float(scores.confidence[offset]), margin, explained_row
            )
    return [result for result in results if result is not None]
