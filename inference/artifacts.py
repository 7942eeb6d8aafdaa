"""The on-disk format of a skill model, shared by training output, user-supplied models and the model store.

A skill artifact is a directory holding three files, none of them a pickle:

- `model.json`  an XGBoost booster (`Booster.save_model`, objective `binary:logistic`; `model.ubj` also works)
- `scaler.json` `{"mean": [...], "scale": [...]}`, the fitted StandardScaler's `mean_` and `scale_`
- `metadata.json` `{"skill", "feature_names", "imputation_defaults": {name: value}, ...}`; optional keys:
  `metrics`, `trained_at`, `training_data_hash`, `reference`, `params`

`feature_names` must equal the catalogue's ordered list for the skill: that order is the model's column order.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import xgboost as xgb

from inference.catalogue import SKILL_FEATURES, SKILLS
from inference.errors import ArtifactError
from inference.scoring import SkillModel, top_importances

MODEL_FILES = ("model.json", "model.ubj")
SCALER_FILE = "scaler.json"
METADATA_FILE = "metadata.json"
REQUIRED_OBJECTIVE = "binary:logistic"


def write_skill_artifact(
    directory: Path, *, booster: xgb.Booster, mean: np.ndarray, scale: np.ndarray, metadata: Mapping[str, Any]
) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    booster.save_model(directory / MODEL_FILES[0])
    _write_json(directory / SCALER_FILE, {"mean": [float(v) for v in mean], "scale": [float(v) for v in scale]})
    write_metadata(directory, metadata)


def write_metadata(directory: Path, metadata: Mapping[str, Any]) -> None:
    _write_json(directory / METADATA_FILE, dict(metadata))


def read_metadata(directory: Path) -> dict[str, Any]:
    metadata = _read_json(directory / METADATA_FILE)
    if not isinstance(metadata, dict):
        raise ArtifactError(f"{directory / METADATA_FILE}: expected a JSON object")
    return metadata


def load_skill_model(directory: Path, *, version: str, metadata: Mapping[str, Any] | None = None) -> SkillModel:
    """Load and validate a skill artifact; every problem raises `ArtifactError` naming the file and the fault."""
    metadata = dict(metadata) if metadata is not None else read_metadata(directory)
    skill = metadata.get("skill")
    if skill not in SKILLS:
        raise ArtifactError(f"{directory / METADATA_FILE}: skill {skill!r} is not one of {', '.join(SKILLS)}")
    feature_names = check_feature_names(skill, metadata.get("feature_names"), where=directory / METADATA_FILE)
    n_features = len(feature_names)

    scaler = _read_json(directory / SCALER_FILE)
    mean = _vector(scaler, "mean", n_features, directory / SCALER_FILE)
    scale = _vector(scaler, "scale", n_features, directory / SCALER_FILE)
    if np.any(scale <= 0):
        raise ArtifactError(f"{directory / SCALER_FILE}: every scale must be positive")

    defaults = metadata.get("imputation_defaults")
    if not isinstance(defaults, dict) or set(defaults) != set(feature_names):
        raise ArtifactError(
            f"{directory / METADATA_FILE}: imputation_defaults must give a value for each of {list(feature_names)}"
        )
    imputation_defaults = _vector(
        {"v": [defaults[name] for name in feature_names]}, "v", n_features, directory / METADATA_FILE
    )

    booster = _load_booster(directory, n_features)
    return SkillModel(
        skill=skill,
        version=version,
        feature_names=feature_names,
        booster=booster,
        mean=mean,
        scale=scale,
        imputation_defaults=imputation_defaults,
        metadata=metadata,
        feature_importance=top_importances(booster, feature_names),
    )


def check_feature_names(skill: str, names: object, *, where: Path | str) -> tuple[str, ...]:
    expected = SKILL_FEATURES[skill]
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise ArtifactError(f"{where}: feature_names must be a list of strings")
    if tuple(names) == expected:
        return expected
    missing = [name for name in expected if name not in names]
    unexpected = [name for name in names if name not in expected]
    detail = f"missing {missing}, unexpected {unexpected}" if missing or unexpected else "same names in another order"
    raise ArtifactError(
        f"{where}: the model's features do not match the catalogue for skill '{skill}' ({detail}); "
        f"expected exactly {list(expected)}"
    )


def _load_booster(directory: Path, n_features: int) -> xgb.Booster:
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
    if booster.num_features() != n_features:
        raise ArtifactError(
            f"{path}: booster expects {booster.num_features()} features, the catalogue lists {n_features}"
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


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as err:
        raise ArtifactError(f"{path}: file is missing") from err
    except (OSError, ValueError) as err:
        raise ArtifactError(f"{path}: not readable JSON ({err})") from err


def _write_json(path: Path, payload: object) -> None:
    path.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
