"""Feature preparation: a request's feature dict becomes one row in the model's order, imputed where missing.

`prepare_row` does it for one request; `prepare_matrix` is its vectorised twin for many rows at once (the batch
scorer), which gives the same values for every row `prepare_row` accepts and flags the others. Scaling is left to
`scoring.score_rows`, which does it once per batch.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass

import numpy as np

from inference.errors import EmptyFeatures, InvalidFeatureValue, NoKnownFeatures, UnknownSkill
from inference.families.skills.schema import FeatureSpec
from inference.families.skills.scoring import SkillModel


@dataclass(frozen=True)
class PreparedRow:
    values: np.ndarray  # (n_features,), model order, missing values imputed
    imputed: tuple[str, ...]  # model features absent from the request, filled with training medians
    ignored: tuple[str, ...]  # request features this skill's model does not use


def check_skill(skill: object, served: Collection[str]) -> str:
    """`skill` when this version serves it; otherwise `UnknownSkill` listing the skills it does serve."""
    if not isinstance(skill, str) or skill not in served:
        raise UnknownSkill(f"skill: unknown skill {skill!r}; expected one of {', '.join(served)}")
    return skill


def prepare_row(features: Mapping[str, object], model: SkillModel) -> PreparedRow:
    """Validate and order one request's features for `model`.

    Every value the model uses must be a finite number within the range its schema gives; the message of the
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
            values[index] = _checked_value(model.schema.features[index], features[name])
        else:
            imputed.append(name)
    ignored = tuple(sorted(name for name in features if name not in used))
    return PreparedRow(values=values, imputed=tuple(imputed), ignored=ignored)


def _checked_value(spec: FeatureSpec, value: object) -> float:
    name = spec.name
    # bool is an int subclass in Python; true/false in JSON is a client mistake, not a number.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidFeatureValue(f"features.{name}: expected a number, got {type(value).__name__} {value!r}")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise InvalidFeatureValue(f"features.{name}: expected a finite number, got {number}")
    if not spec.contains(number):
        unit = f" ({spec.unit})" if spec.unit else ""
        raise InvalidFeatureValue(f"features.{name}: {number:g} is outside the valid range {spec.range_text()}{unit}")
    return number


@dataclass(frozen=True)
class PreparedMatrix:
    values: np.ndarray  # (n, n_features), model order, missing values imputed; meaningless where not `valid`
    valid: np.ndarray  # (n,) bool: the rows `prepare_row` accepts


def prepare_matrix(values: np.ndarray, missing: np.ndarray, model: SkillModel) -> PreparedMatrix:
    """Impute and validate many rows at once: `values` and `missing` are (n, n_features) in the model's order.

    A row is valid when at least one of the model's features is present and every present value is a finite
    number within the schema's range: the rule of `prepare_row`, whose error message names the feature of a
    row found invalid here.
    """
    with np.errstate(invalid="ignore"):  # NaN compares False: caught by isfinite
        acceptable = missing | (np.isfinite(values) & (values >= model.minimum) & (values <= model.maximum))
    valid = acceptable.all(axis=1) & ~missing.all(axis=1)
    return PreparedMatrix(values=np.where(missing, model.imputation_defaults, values), valid=valid)
