"""Feature preparation: a request's feature dict becomes one row in the model's order, imputed where missing.

Scaling is left to `scoring.score_rows`, which does it once per batch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from inference.catalogue import FEATURES, SKILLS
from inference.errors import EmptyFeatures, InvalidFeatureValue, NoKnownFeatures, UnknownSkill
from inference.scoring import SkillModel


@dataclass(frozen=True)
class PreparedRow:
    values: np.ndarray  # (n_features,), model order, missing values imputed
    imputed: tuple[str, ...]  # model features absent from the request, filled with training medians
    ignored: tuple[str, ...]  # request features this skill's model does not use


def check_skill(skill: object) -> str:
    if not isinstance(skill, str) or skill not in SKILLS:
        raise UnknownSkill(f"skill: unknown skill {skill!r}; expected one of {', '.join(SKILLS)}")
    return skill


def prepare_row(features: Mapping[str, object], model: SkillModel) -> PreparedRow:
    """Validate and order one request's features for `model`.

    Every value the model uses must be a finite number within the catalogue's range; the message of the
    error names the feature. Features the model does not use are ignored (and reported), never validated.
    """
    if not features:
        raise EmptyFeatures("features: must name at least one feature; got an empty object")
    used = set(model.feature_names)
    if used.isdisjoint(features):
        raise NoKnownFeatures(
            f"features: none of the {len(model.feature_names)} features of skill '{model.skill}' were given; "
            f"expected some of {', '.join(model.feature_names)}"
        )
    values = model.imputation_defaults.copy()
    imputed = []
    for index, name in enumerate(model.feature_names):
        if name in features:
            values[index] = _checked_value(name, features[name])
        else:
            imputed.append(name)
    ignored = tuple(sorted(name for name in features if name not in used))
    return PreparedRow(values=values, imputed=tuple(imputed), ignored=ignored)


def _checked_value(name: str, value: object) -> float:
    # bool is an int subclass in Python; true/false in JSON is a client mistake, not a number.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidFeatureValue(f"features.{name}: expected a number, got {type(value).__name__} {value!r}")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise InvalidFeatureValue(f"features.{name}: expected a finite number, got {number}")
    feature = FEATURES[name]
    if not feature.contains(number):
        raise InvalidFeatureValue(
            f"features.{name}: {number:g} is outside the valid range "
            f"[{feature.minimum:g}, {feature.maximum:g}] ({feature.unit})"
        )
    return number
