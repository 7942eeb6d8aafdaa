"""Seeded synthetic students with real structure, for demo models, tests, load tests and drift drills.

Each student has one latent trait per skill (correlated through a general factor). Every feature is a noisy
mix of a few traits, mapped onto the feature's unit and range from the catalogue. A simulated teacher rates
each skill from the trait plus rater noise (1-5 scale); the label "high skill" is a rating of 3.5 or more.
Because labels come from traits that the features only partly reveal, models reach AUCs around 0.8-0.9
rather than a perfect score, and the kept ratings let monitoring check correlation with ground truth.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

import numpy as np

from train.data.catalogue import FEATURES, SKILLS

HIGH_SKILL_RATING = 3.5
GENERAL_FACTOR_SHARE = 0.3
FEATURE_NOISE = 0.9
RATER_NOISE = 0.45
MISSING_SHARE = 0.03


class Shape(Enum):
    RATIO = "ratio"  # logistic onto (0, 1)
    SIGNED = "signed"  # tanh onto (-1, 1)
    POSITIVE = "positive"  # log-normal onto (0, inf), then clipped to the catalogue's range


@dataclass(frozen=True)
class _FeatureModel:
    loadings: Mapping[str, float]
    shape: Shape
    centre: float  # logit for RATIO, atanh-space for SIGNED, median for POSITIVE
    spread: float


_GENERATIVE: dict[str, _FeatureModel] = {
    "words_per_response": _FeatureModel(
        {"communication": 0.8, "creativity": 0.3, "leadership": 0.2}, Shape.POSITIVE, 120, 0.45
    ),
    "vocabulary_diversity": _FeatureModel(
        {"communication": 0.6, "critical_thinking": 0.4, "creativity": 0.5}, Shape.RATIO, 0.2, 0.5
    ),
    "avg_sentence_length": _FeatureModel({"communication": 0.5, "critical_thinking": 0.4}, Shape.POSITIVE, 14, 0.25),
    "question_ratio": _FeatureModel(
        {"critical_thinking": 0.6, "creativity": 0.4, "communication": 0.2}, Shape.RATIO, -1.8, 0.5
    ),
    "argument_markers_rate": _FeatureModel(
        {"critical_thinking": 0.9, "problem_solving": 0.4}, Shape.POSITIVE, 2.5, 0.4
    ),
    "collaborative_language_ratio": _FeatureModel({"collaboration": 0.9, "leadership": 0.4}, Shape.RATIO, -0.8, 0.6),
    "hedging_ratio": _FeatureModel({"critical_thinking": 0.4, "creativity": -0.3}, Shape.RATIO, -1.5, 0.5),
    "sentiment_positivity": _FeatureModel(
        {"collaboration": 0.5, "leadership": 0.3, "communication": 0.3}, Shape.SIGNED, 0.2, 0.35
    ),
    "novel_idea_count": _FeatureModel({"creativity": 1.0, "problem_solving": 0.4}, Shape.POSITIVE, 3.0, 0.5),
    "time_on_task_minutes": _FeatureModel({"self_regulation": 0.7, "problem_solving": 0.4}, Shape.POSITIVE, 45, 0.4),
    "task_completion_rate": _FeatureModel({"self_regulation": 0.8, "problem_solving": 0.5}, Shape.RATIO, 1.2, 0.7),
    "peer_interactions_per_week": _FeatureModel(
        {"collaboration": 0.8, "communication": 0.5, "leadership": 0.4}, Shape.POSITIVE, 20, 0.5
    ),
    "help_requests_per_week": _FeatureModel(
        {"self_regulation": -0.5, "problem_solving": -0.3, "collaboration": 0.3}, Shape.POSITIVE, 3, 0.5
    ),
    "help_given_per_week": _FeatureModel({"collaboration": 0.7, "leadership": 0.6}, Shape.POSITIVE, 2.5, 0.55),
    "revision_count": _FeatureModel(
        {"self_regulation": 0.4, "critical_thinking": 0.4, "creativity": 0.3}, Shape.POSITIVE, 4, 0.45
    ),
    "on_time_submission_rate": _FeatureModel({"self_regulation": 1.0}, Shape.RATIO, 1.5, 0.8),
    "leadership_roles_taken": _FeatureModel({"leadership": 1.0, "communication": 0.2}, Shape.POSITIVE, 1.5, 0.6),
    "forum_posts_per_week": _FeatureModel(
        {"communication": 0.6, "collaboration": 0.4, "leadership": 0.3}, Shape.POSITIVE, 5, 0.55
    ),
    "attempts_before_success": _FeatureModel(
        {"problem_solving": -0.7, "self_regulation": -0.3}, Shape.POSITIVE, 3, 0.35
    ),
    "self_assessment_accuracy": _FeatureModel(
        {"self_regulation": 0.8, "critical_thinking": 0.3}, Shape.RATIO, 0.6, 0.6
    ),
}


@dataclass(frozen=True)
class StudentSample:
    """Generated students: feature values (NaN where missing), teacher ratings and labels, one row a student."""

    student_ids: list[str]
    feature_names: tuple[str, ...]
    features: np.ndarray  # (n, n_features), catalogue units
    ratings: np.ndarray  # (n, n_skills), teacher rating 1.0-5.0
    traits: np.ndarray  # (n, n_skills), latent

    @property
    def labels(self) -> np.ndarray:
        return (self.ratings >= HIGH_SKILL_RATING).astype(np.int32)

    def column(self, name: str) -> np.ndarray:
        return self.features[:, self.feature_names.index(name)]

    def feature_dicts(self) -> list[dict[str, float]]:
        """Rows as request-ready dicts; missing values are left out, as a client would."""
        rows = []
        for values in self.features:
            rows.append({name: float(v) for name, v in zip(self.feature_names, values, strict=True) if not np.isnan(v)})
        return rows


def generate_students(
    n: int,
    *,
    seed: int,
    feature_shift: Mapping[str, float] | None = None,
    missing_share: float = MISSING_SHARE,
    id_prefix: str = "student",
) -> StudentSample:
    """Generate `n` students deterministically from `seed`.

    `feature_shift` moves a feature's latent value by that many standard deviations before it is mapped to its
    unit, which simulates drift in the live population (the teacher's ratings do not move with it).
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    rng = np.random.default_rng(seed)
    general = rng.standard_normal((n, 1))
    specific = rng.standard_normal((n, len(SKILLS)))
    traits = np.sqrt(GENERAL_FACTOR_SHARE) * general + np.sqrt(1 - GENERAL_FACTOR_SHARE) * specific

    shift = dict(feature_shift or {})
    unknown = set(shift) - set(_GENERATIVE)
    if unknown:
        raise ValueError(f"cannot shift unknown features {sorted(unknown)}")

    names = tuple(FEATURES)
    columns = []
    for name in names:
        spec = _GENERATIVE[name]
        weights = np.array([spec.loadings.get(skill, 0.0) for skill in SKILLS])
        signal = traits @ weights
        signal /= np.sqrt(weights @ weights)  # unit variance up to trait correlation
        latent = signal + FEATURE_NOISE * rng.standard_normal(n) + shift.get(name, 0.0)
        columns.append(_to_unit(latent, spec, FEATURES[name].minimum, FEATURES[name].maximum))
    features = np.column_stack(columns)
    if missing_share > 0:
        features[rng.random(features.shape) < missing_share] = np.nan

    rater = traits + RATER_NOISE * rng.standard_normal(traits.shape)
    ratings = np.round(np.clip(3.0 + 0.9 * rater, 1.0, 5.0), 1)
    student_ids = [f"{id_prefix}-{seed}-{i:07d}" for i in range(n)]
    return StudentSample(student_ids, names, features, ratings, traits)


def _to_unit(latent: np.ndarray, spec: _FeatureModel, low: float, high: float) -> np.ndarray:
    if spec.shape is Shape.RATIO:
        values = 1.0 / (1.0 + np.exp(-(spec.centre + spec.spread * 2.0 * latent)))
    elif spec.shape is Shape.SIGNED:
        values = np.tanh(spec.centre + spec.spread * 2.0 * latent)
    else:
        values = spec.centre * np.exp(spec.spread * latent)
    return np.round(np.clip(values, low, high), 4)
