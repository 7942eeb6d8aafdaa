"""A skill model's feature schema, carried in its store metadata: the features' names and column order, the value
that stands in for a missing one, and optionally a unit, a valid range and a description.

Nothing here lists a team's features: request validation, imputation, the OIP metadata, drift references,
explanations, the generated docs and the batch scorer all read the schema of the model version they serve.

In `metadata.json`:

    "feature_names": ["words_per_response", ...],                 the model's column order
    "imputation_defaults": {"words_per_response": 140.0, ...},    one per feature
    "features": {"words_per_response": {"unit": "words", "minimum": 0, "maximum": 2000,
                                        "description": "Mean length of a written response."}}   optional
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from inference.errors import ArtifactError
from inference.storage import MAX_IDENTIFIER_BYTES, STUDENT_KEY_COLUMNS

SCHEMA_KEYS = ("unit", "minimum", "maximum", "description")
# A feature is also a column of the batch scorer's `student_features` table (quoted, so any text works): at most
# PostgreSQL's 63 bytes, and not one of the table's own columns.
MAX_FEATURE_NAME_BYTES = MAX_IDENTIFIER_BYTES
RESERVED_FEATURE_NAMES = STUDENT_KEY_COLUMNS


def check_feature_name(name: object, *, where: Path | str) -> str:
    """`name` when it can name a feature: 1 to 63 bytes in UTF-8, no leading or trailing space, not a column of
    the student table's own."""
    if (
        not isinstance(name, str)
        or not name
        or len(name.encode()) > MAX_FEATURE_NAME_BYTES
        or name in RESERVED_FEATURE_NAMES
        or name != name.strip()
    ):
        raise ArtifactError(
            f"{where}: feature name {name!r} is not usable: 1 to {MAX_FEATURE_NAME_BYTES} bytes in UTF-8, not "
            f"{' or '.join(RESERVED_FEATURE_NAMES)}, no leading or trailing space"
        )
    return name


@dataclass(frozen=True)
class FeatureSpec:
    name: str
    default: float  # imputed when a request leaves the feature out
    unit: str = ""
    minimum: float = -math.inf  # values outside [minimum, maximum] are refused naming the feature
    maximum: float = math.inf
    description: str = ""

    def contains(self, value: float) -> bool:
        return self.minimum <= value <= self.maximum

    def range_text(self) -> str:
        low = "" if math.isinf(self.minimum) else f"{self.minimum:g}"
        high = "" if math.isinf(self.maximum) else f"{self.maximum:g}"
        return f"[{low or '-inf'}, {high or 'inf'}]"

    def to_metadata(self) -> dict[str, Any]:
        """The optional part of this feature in `metadata["features"]` (only what is known)."""
        entry: dict[str, Any] = {}
        if self.unit:
            entry["unit"] = self.unit
        if not math.isinf(self.minimum):
            entry["minimum"] = self.minimum
        if not math.isinf(self.maximum):
            entry["maximum"] = self.maximum
        if self.description:
            entry["description"] = self.description
        return entry


@dataclass(frozen=True)
class FeatureSchema:
    features: tuple[FeatureSpec, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(spec.name for spec in self.features)

    def defaults(self) -> np.ndarray:
        return np.array([spec.default for spec in self.features], dtype=np.float64)

    def minimum(self) -> np.ndarray:
        return np.array([spec.minimum for spec in self.features], dtype=np.float64)

    def maximum(self) -> np.ndarray:
        return np.array([spec.maximum for spec in self.features], dtype=np.float64)

    def to_metadata(self) -> dict[str, Any]:
        """The three metadata keys that carry this schema."""
        return {
            "feature_names": list(self.names),
            "imputation_defaults": {spec.name: spec.default for spec in self.features},
            "features": {spec.name: spec.to_metadata() for spec in self.features if spec.to_metadata()},
        }


def schema_from_metadata(metadata: Mapping[str, Any], *, where: Path | str) -> FeatureSchema:
    """The schema a model's metadata declares; every fault is an `ArtifactError` naming `where` and the key."""
    names = metadata.get("feature_names")
    if not isinstance(names, list) or not names:
        raise ArtifactError(f"{where}: feature_names must be a non-empty list of feature names")
    for name in names:
        check_feature_name(name, where=f"{where}: feature_names")
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ArtifactError(f"{where}: feature_names lists {duplicates} more than once")
    defaults = metadata.get("imputation_defaults")
    if not isinstance(defaults, Mapping) or set(defaults) != set(names):
        raise ArtifactError(f"{where}: imputation_defaults must give one value for each of {names}")
    described = metadata.get("features") or {}
    if not isinstance(described, Mapping):
        raise ArtifactError(f"{where}: features must map a feature name to its unit, range and description")
    unknown = sorted(set(described) - set(names))
    if unknown:
        raise ArtifactError(f"{where}: features describes {unknown}, which are not in feature_names")
    specs = []
    for name in names:
        entry = described.get(name) or {}
        if not isinstance(entry, Mapping) or set(entry) - set(SCHEMA_KEYS):
            raise ArtifactError(f"{where}: features.{name} may hold only {', '.join(SCHEMA_KEYS)}")
        default = _number(defaults[name], f"{where}: imputation_defaults.{name}")
        minimum = _number(entry.get("minimum", -math.inf), f"{where}: features.{name}.minimum", finite=False)
        maximum = _number(entry.get("maximum", math.inf), f"{where}: features.{name}.maximum", finite=False)
        if minimum > maximum:
            raise ArtifactError(f"{where}: features.{name}: minimum {minimum:g} is above maximum {maximum:g}")
        if not minimum <= default <= maximum:
            raise ArtifactError(
                f"{where}: imputation_defaults.{name} = {default:g} is outside the feature's range "
                f"[{minimum:g}, {maximum:g}]"
            )
        specs.append(
            FeatureSpec(
                name=name,
                default=default,
                unit=str(entry.get("unit", "")),
                minimum=minimum,
                maximum=maximum,
                description=str(entry.get("description", "")),
            )
        )
    return FeatureSchema(tuple(specs))


def _number(value: object, where: str, *, finite: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ArtifactError(f"{where}: expected a number, got {value!r}")
    number = float(value)
    if math.isnan(number) or (finite and math.isinf(number)):
        raise ArtifactError(f"{where}: expected a finite number, got {value!r}")
    return number
