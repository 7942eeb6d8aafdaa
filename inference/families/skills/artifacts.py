"""The on-disk format of a skill model, shared by training output, user-supplied models and the model store.

A skill artifact is a directory holding three files, none of them a pickle (and, in the store, a fourth):

- `model.json`  an XGBoost booster (`Booster.save_model`, objective `binary:logistic`; `model.ubj` also works)
- `scaler.json` `{"mean": [...], "scale": [...]}`, the fitted StandardScaler's `mean_` and `scale_`
- `metadata.json` `{"skill", "feature_names", "imputation_defaults": {name: value}, ...}`; optional keys:
  `features` (unit, range, description per feature: `inference.families.skills.schema`), `samples` (held-out
  rows and the scores they must get, checked at every load), `metrics`, `trained_at`, `training_data_hash`,
  `reference` (drift), `params`, `source` (what an importer converted)
- `model.onnx` the booster compiled for ONNX Runtime, written by the import when the converter supports the
  booster and its probabilities equal XGBoost's (`inference.families.skills.compiled`); optional

`feature_names` is the model's column order; the booster must take exactly that many features (and, when it
names its features, these names in this order).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import xgboost as xgb

from inference.errors import ArtifactError
from inference.families.skills.compiled import load_compiled
from inference.families.skills.schema import schema_from_metadata
from inference.families.skills.scoring import SkillModel, top_importances
from inference.schemas import SKILL_NAME
from inference.store.files import METADATA_FILE, read_json, read_metadata, write_json, write_metadata

MODEL_FILES = ("model.json", "model.ubj")
SCALER_FILE = "scaler.json"
REQUIRED_OBJECTIVE = "binary:logistic"


def write_skill_artifact(
    directory: Path, *, booster: xgb.Booster, mean: np.ndarray, scale: np.ndarray, metadata: Mapping[str, Any]
) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    booster.save_model(directory / MODEL_FILES[0])
    write_json(directory / SCALER_FILE, {"mean": [float(v) for v in mean], "scale": [float(v) for v in scale]})
    write_metadata(directory, metadata)


def load_skill_model(directory: Path, *, version: str, metadata: Mapping[str, Any] | None = None) -> SkillModel:
    """Load and validate a skill artifact; every problem raises `ArtifactError` naming the file and the fault."""
    metadata = dict(metadata) if metadata is not None else read_metadata(directory)
    where = directory / METADATA_FILE
    skill = check_skill_name(metadata.get("skill"), where=where)
    schema = schema_from_metadata(metadata, where=where)
    n_features = len(schema.features)

    scaler = read_json(directory / SCALER_FILE)
    mean = _vector(scaler, "mean", n_features, directory / SCALER_FILE)
    scale = _vector(scaler, "scale", n_features, directory / SCALER_FILE)
    if np.any(scale <= 0):
        raise ArtifactError(f"{directory / SCALER_FILE}: every scale must be positive")

    booster = _load_booster(directory, schema.names)
    compiled = load_compiled(directory, booster, scaled_samples(metadata, schema.defaults(), mean, scale))
    return SkillModel(
        skill=skill,
        version=version,
        schema=schema,
        booster=booster,
        mean=mean,
        scale=scale,
        metadata=metadata,
        feature_importance=top_importances(booster, schema.names),
        compiled=compiled,
    )


def scaled_samples(
    metadata: Mapping[str, Any], defaults: np.ndarray, mean: np.ndarray, scale: np.ndarray
) -> np.ndarray:
    """The held-out sample rows stored with a model (its imputation defaults when it has none), scaled: what the
    compiled form is compared with the booster on. Malformed samples fall back to the defaults here; the smoke
    test (`check_skill_models`) refuses them with its own message."""
    stored = metadata.get("samples")
    samples = stored if isinstance(stored, dict) else {}
    try:
        rows = np.array(samples.get("inputs") or [defaults], dtype=np.float64)
    except (TypeError, ValueError):
        rows = np.array([defaults], dtype=np.float64)
    if rows.ndim != 2 or rows.shape[1] != len(mean) or not np.all(np.isfinite(rows)):
        rows = np.array([defaults], dtype=np.float64)
    return np.asarray((rows - mean) / scale, dtype=np.float64)


def check_skill_name(skill: object, *, where: Path | str) -> str:
    """A skill's name: it names the store model (`skill-<name>`), the OIP model and database rows."""
    if not isinstance(skill, str) or not SKILL_NAME.match(skill):
        raise ArtifactError(
            f"{where}: skill {skill!r} is not a usable skill name (lowercase letters, digits and _, starting with "
            "a letter, at most 64 characters)"
        )
    return skill


def _load_booster(directory: Path, feature_names: tuple[str, ...]) -> xgb.Booster:
    path = next((directory / name for name in MODEL_FILES if (directory / name).is_file()), None)
    if path is None:
        raise ArtifactError(f"{directory}: no booster file; expected one of {', '.join(MODEL_FILES)}")
    try:
        booster = xgb.Booster(model_file=str(path))
        objective = json.loads(booster.save_config())["learner"]["objective"]["name"]
    except (xgb.core.XGBoostError, KeyError, ValueError) as err:
        raise ArtifactError(f"{path}: not a readable XGBoost model ({err})") from err
    if objective != REQUIRED_OBJECTIVE:
        raise ArtifactError(f"{path}: objective is {objective!r}; a skill model must use {REQUIRED_OBJECTIVE!r}")
    if booster.num_features() != len(feature_names):
        raise ArtifactError(
            f"{path}: booster expects {booster.num_features()} features, the metadata lists {len(feature_names)}"
        )
    if booster.feature_names is not None and tuple(booster.feature_names) != feature_names:
        raise ArtifactError(
            f"{path}: the booster's features {list(booster.feature_names)} are not the metadata's feature_names "
            f"{list(feature_names)} in that order"
        )
    booster.set_param({"nthread": 1})  # one row to a few hundred: threading costs more than it saves
    return booster


def _vector(source: object, key: str, length: int, where: Path) -> np.ndarray:
    values = source.get(key) if isinstance(source, dict) else None
    try:
        vector = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ArtifactError(f"{where}: {key} must be a list of numbers") from err
    if vector.shape != (length,) or not np.all(np.isfinite(vector)):
        raise ArtifactError(f"{where}: {key} must be {length} finite numbers")
    return vector
