"""Skill models as teams have them, converted into the store's pickle-free format (`artifacts.py`), so that serving
never unpickles a skill model.

One folder per skill, named after the skill (`skill-<name>` in the store), holding one of:

- `model.pkl` (a pickled binary `XGBClassifier` or xgboost `Booster`) with `scaler.pkl` (its fitted
  `StandardScaler`), or alone (a model trained on raw features: identity scaling, said in the metadata's
  `source.scaling`); `.joblib` files too. Opened only with `--trust-pickles`.
- `pipeline.joblib` (or `.pkl`): a fitted scikit-learn `Pipeline` of exactly a `StandardScaler` then an
  `XGBClassifier`. Opened only with `--trust-pickles`.
- `model.json` (or `model.ubj`) with `scaler.json`: the store's own format; without `scaler.json`, identity scaling.

and, optionally, `features.json` (the feature names in column order, or objects with `name`, `unit`, `minimum`,
`maximum`, `description`, `default`), `metadata.json` (anything the store format's metadata holds; kept) and
`samples.csv` (sample rows, one column per feature).

The feature order is what the model states (the scaler's or pipeline's `feature_names_in_`, the booster's
`feature_names`), the features file or the metadata's `feature_names`: whichever are there must agree, and count
as many features as the scaler and the booster take. The converted model must give the original's probabilities
on the sample rows (`CONVERSION_TOLERANCE`), which are kept as the samples every load checks.
"""

from __future__ import annotations

import json
import tempfile
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xgboost as xgb
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from inference.errors import ArtifactError
from inference.families.skills.artifacts import (
    MODEL_FILES,
    REQUIRED_OBJECTIVE,
    SCALER_FILE,
    check_skill_name,
    load_skill_model,
    write_skill_artifact,
)
from inference.families.skills.family import SkillsFamily
from inference.families.skills.schema import SCHEMA_KEYS, FeatureSchema, check_feature_name, schema_from_metadata
from inference.families.skills.scoring import score_rows
from inference.store.files import METADATA_FILE, read_json, write_metadata
from inference.store.importing import (
    ImportOptions,
    check_conversion,
    describe_sources,
    folder_metadata,
    kept_metadata,
    load_pickle,
    one_file,
    present_files,
    read_csv_columns,
)
from inference.store.registry import check_semver
from inference.store.validation import check_probabilities

PICKLED_MODELS = ("model.pkl", "model.joblib")
PICKLED_SCALERS = ("scaler.pkl", "scaler.joblib")
PIPELINES = ("pipeline.joblib", "pipeline.pkl")
SCALERS = (SCALER_FILE, *PICKLED_SCALERS)
FEATURES_FILE = "features.json"
SAMPLES_FILE = "samples.csv"
MEANS = "means"
# Without sample rows, rows are drawn around the training means, up to this many scales away, from a fixed seed.
GENERATED_ROWS = 32
GENERATED_SPREAD = 3.0
GENERATED_SEED = 0
KEPT_SAMPLES = 100  # sample rows kept in the metadata (every row given is checked at import)


@dataclass(frozen=True)
class SkillSource:
    """A team's skill model, read: what the store keeps of it, and the original's own way to score raw rows."""

    folder: Path
    kind: str
    files: tuple[Path, ...]
    model_file: Path  # named when the conversion differs
    scaler_file: Path | None  # None: no scaler, the model takes raw features (identity scaling)
    booster: xgb.Booster
    center: np.ndarray  # what the scaler subtracts
    scale: np.ndarray  # what it divides by
    training_mean: np.ndarray | None  # the scaler's mean_, known even when it does not centre
    stated_names: dict[Path, tuple[str, ...]]  # the feature names each file states
    original: Callable[[np.ndarray], np.ndarray]  # P(class 1) of raw rows, computed by the original
    metadata: dict[str, Any]  # the metadata.json beside it, or nothing


def is_skill_folder(folder: Path, *, telling: bool = False) -> bool:
    """Whether `folder` holds a skill model; `telling`: one that says it is a skill model without --family (a
    scaler, a pipeline or XGBoost's own format: a pickled model alone could be any family's)."""
    telltales = (*SCALERS, *PIPELINES, *MODEL_FILES)
    return bool(present_files(folder, telltales if telling else (*telltales, *PICKLED_MODELS)))


def source_folders(root: Path, *, telling: bool = False) -> list[Path]:
    """The skill folders under `root`: `root` itself when it holds a skill model, else its sub-folders that do."""
    if is_skill_folder(root, telling=telling):
        return [root]
    return sorted(folder for folder in root.iterdir() if folder.is_dir() and is_skill_folder(folder, telling=telling))


def import_skill_models(root: Path, *, version: str, options: ImportOptions) -> list[str]:
    """Convert every skill folder under `root` and save each as `skill-<folder name>:<version>`, all or nothing."""
    check_semver(version)
    folders = source_folders(root) if root.is_dir() else []
    if not folders:
        raise ArtifactError(
            f"{root}: no skill model folders (each holds model.pkl, pipeline.joblib or model.json, with its scaler "
            "when it has one)"
        )
    with tempfile.TemporaryDirectory(prefix="skills-import-") as scratch:
        for folder in folders:
            convert_skill_folder(folder, Path(scratch), version=version, options=options)
        return SkillsFamily().import_artifacts(Path(scratch), version)


def convert_skill_folder(folder: Path, out_dir: Path, *, version: str, options: ImportOptions) -> Path:
    """Write the skill model of `folder` in the store's format as `out_dir/<skill>`, checked against the original."""
    skill = check_skill_name(folder.resolve().name, where=folder)
    source = read_skill_source(folder, trusted=options.trust_pickles)
    if source.metadata.get("skill", skill) != skill:
        raise ArtifactError(f"{folder / METADATA_FILE}: skill {source.metadata['skill']!r} is not its folder's name")
    schema, imputed_means = skill_schema(source, options)
    rows, expected = sample_rows(source, schema, options)
    original = source.original(rows)
    # Samples a trainer stored beside the model: the original must still give the answers it gave then.
    check_probabilities(original, where=str(source.model_file), expected=expected)
    metadata = {
        **kept_metadata(source.metadata),
        "skill": skill,
        **schema.to_metadata(),
        "source": {
            **describe_sources(source.kind, source.files),
            "imputed_with_means": imputed_means,
            # What the features go through before the trees: the scaler's, or nothing (a model without one).
            "scaling": "standard" if source.scaler_file is not None else "identity",
        },
    }
    directory = out_dir / skill
    write_skill_artifact(directory, booster=source.booster, mean=source.center, scale=source.scale, metadata=metadata)
    converted = score_rows(load_skill_model(directory, version=version), rows).score
    check_conversion(converted, original, where=source.model_file)
    kept = slice(0, KEPT_SAMPLES)
    write_metadata(
        directory, {**metadata, "samples": {"inputs": rows[kept].tolist(), "scores": converted[kept].tolist()}}
    )
    return directory


# --- reading the three formats --------------------------------------------------------------------------------


def read_skill_source(folder: Path, *, trusted: bool) -> SkillSource:
    formats = {
        "pickles": present_files(folder, (*PICKLED_MODELS, *PICKLED_SCALERS)),
        "pipeline": present_files(folder, PIPELINES),
        "json": present_files(folder, (*MODEL_FILES, SCALER_FILE)),
    }
    found = {kind: files for kind, files in formats.items() if files}
    if len(found) != 1:
        held = ", ".join(path.name for files in found.values() for path in files) or "none of them"
        raise ArtifactError(
            f"{folder}: expected one skill model: model.pkl (with scaler.pkl when it has one), pipeline.joblib, or "
            f"model.json (with scaler.json); it holds {held}"
        )
    metadata = folder_metadata(folder)
    if "pipeline" in found:
        return _from_pipeline(folder, one_file(folder, PIPELINES, "pipeline"), metadata, trusted=trusted)
    if "pickles" in found:
        return _from_pickles(folder, metadata, trusted=trusted)
    return _from_json(folder, metadata)


def _from_pickles(folder: Path, metadata: dict[str, Any], *, trusted: bool) -> SkillSource:
    model_file = one_file(folder, PICKLED_MODELS, "pickled model")
    model = load_pickle(model_file, trusted=trusted)
    if not present_files(folder, PICKLED_SCALERS):
        return _unscaled(folder, model_file, model, metadata)
    scaler_file = one_file(folder, PICKLED_SCALERS, "pickled StandardScaler")
    scaler = load_pickle(scaler_file, trusted=trusted)
    center, scale, mean = _scaler_parameters(scaler, where=scaler_file)
    if isinstance(model, xgb.XGBClassifier):
        booster = _classifier_booster(model, where=model_file)

        def original(rows: np.ndarray) -> np.ndarray:
            with warnings.catch_warnings():  # a scaler fitted on a DataFrame warns about the bare array
                warnings.simplefilter("ignore", UserWarning)
                return np.asarray(model.predict_proba(scaler.transform(rows))[:, 1], dtype=np.float64)

    elif isinstance(model, xgb.Booster):
        booster = _check_objective(model, where=model_file)

        def original(rows: np.ndarray) -> np.ndarray:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                return _booster_probabilities(model, scaler.transform(rows))

    else:
        raise ArtifactError(f"{model_file}: a {type(model).__name__}; expected an xgboost XGBClassifier or Booster")
    return SkillSource(
        folder=folder,
        kind="pickled xgboost model and StandardScaler",
        files=(model_file, scaler_file),
        model_file=model_file,
        scaler_file=scaler_file,
        booster=booster,
        center=center,
        scale=scale,
        training_mean=mean,
        stated_names=_stated(
            (scaler_file, getattr(scaler, "feature_names_in_", None)), (model_file, booster.feature_names)
        ),
        original=original,
        metadata=metadata,
    )


def _unscaled(folder: Path, model_file: Path, model: object, metadata: dict[str, Any]) -> SkillSource:
    """A model trained on raw features, the commonest tree-model export: stored with identity scaling (subtract 0,
    divide by 1), so it scores exactly what it was given."""
    if isinstance(model, xgb.XGBClassifier):
        booster = _classifier_booster(model, where=model_file)

        def original(rows: np.ndarray) -> np.ndarray:
            return np.asarray(model.predict_proba(rows)[:, 1], dtype=np.float64)

    elif isinstance(model, xgb.Booster):
        booster = _check_objective(model, where=model_file)

        def original(rows: np.ndarray) -> np.ndarray:
            return _booster_probabilities(model, rows)

    else:
        raise ArtifactError(f"{model_file}: a {type(model).__name__}; expected an xgboost XGBClassifier or Booster")
    return _identity_scaled(folder, "pickled xgboost model without a scaler", model_file, booster, original, metadata)


def _identity_scaled(
    folder: Path,
    kind: str,
    model_file: Path,
    booster: xgb.Booster,
    original: Callable[[np.ndarray], np.ndarray],
    metadata: dict[str, Any],
) -> SkillSource:
    """A model without a scaler, whatever its format: subtract 0 and divide by 1 in each of its features."""
    width = booster.num_features()
    return SkillSource(
        folder=folder,
        kind=kind,
        files=(model_file,),
        model_file=model_file,
        scaler_file=None,
        booster=booster,
        center=np.zeros(width),
        scale=np.ones(width),
        training_mean=None,
        stated_names=_stated((model_file, booster.feature_names)),
        original=original,
        metadata=metadata,
    )


def _from_pipeline(folder: Path, path: Path, metadata: dict[str, Any], *, trusted: bool) -> SkillSource:
    pipeline = load_pickle(path, trusted=trusted)
    steps = pipeline.steps if isinstance(pipeline, Pipeline) else []
    if (
        not isinstance(pipeline, Pipeline)
        or len(steps) != 2
        or not isinstance(steps[0][1], StandardScaler)
        or not isinstance(steps[1][1], xgb.XGBClassifier)
    ):
        found = (
            f"a pipeline of {[(name, type(step).__name__) for name, step in steps]}"
            if isinstance(pipeline, Pipeline)
            else f"a {type(pipeline).__name__}, not a Pipeline"
        )
        raise ArtifactError(
            f"{path}: {found}; expected exactly a StandardScaler then an XGBClassifier (or export the model as "
            "model.pkl with scaler.pkl)"
        )
    scaler, classifier = steps[0][1], steps[1][1]
    center, scale, mean = _scaler_parameters(scaler, where=path)
    booster = _classifier_booster(classifier, where=path)

    def original(rows: np.ndarray) -> np.ndarray:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return np.asarray(pipeline.predict_proba(rows)[:, 1], dtype=np.float64)

    return SkillSource(
        folder=folder,
        kind="scikit-learn Pipeline (StandardScaler, XGBClassifier)",
        files=(path,),
        model_file=path,
        scaler_file=path,
        booster=booster,
        center=center,
        scale=scale,
        training_mean=mean,
        stated_names=_stated((path, getattr(scaler, "feature_names_in_", None)), (path, booster.feature_names)),
        original=original,
        metadata=metadata,
    )


def _from_json(folder: Path, metadata: dict[str, Any]) -> SkillSource:
    model_file = one_file(folder, MODEL_FILES, "XGBoost model")
    scaler_file = folder / SCALER_FILE
    try:
        booster = xgb.Booster(model_file=str(model_file))
    except xgb.core.XGBoostError as err:
        raise ArtifactError(f"{model_file}: not a readable XGBoost model ({err})") from err
    _check_objective(booster, where=model_file)
    if not scaler_file.is_file():  # a model trained on raw features: identity scaling
        return _identity_scaled(
            folder,
            "XGBoost JSON model without a scaler",
            model_file,
            booster,
            lambda rows: _booster_probabilities(booster, rows),
            metadata,
        )
    scaler = read_json(scaler_file)
    vectors = [scaler.get(key) if isinstance(scaler, dict) else None for key in ("mean", "scale")]
    try:
        mean, scale = (np.asarray(vector, dtype=np.float64) for vector in vectors)
    except (TypeError, ValueError) as err:
        raise ArtifactError(f"{scaler_file}: mean and scale must be lists of numbers") from err
    if mean.shape != scale.shape or mean.ndim != 1 or not np.all(np.isfinite([mean, scale])) or not np.all(scale > 0):
        raise ArtifactError(f"{scaler_file}: mean and scale must be as many finite numbers, every scale positive")
    return SkillSource(
        folder=folder,
        kind="XGBoost JSON model and scaler.json",
        files=(model_file, scaler_file),
        model_file=model_file,
        scaler_file=scaler_file,
        booster=booster,
        center=mean,
        scale=scale,
        training_mean=mean,
        stated_names=_stated((model_file, booster.feature_names)),
        original=lambda rows: _booster_probabilities(booster, (rows - mean) / scale),
        metadata=metadata,
    )


def _scaler_parameters(scaler: object, *, where: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """What a fitted StandardScaler subtracts and divides by (0 and 1 where it does not), and its training means."""
    if not isinstance(scaler, StandardScaler):
        raise ArtifactError(f"{where}: a {type(scaler).__name__}; expected a fitted scikit-learn StandardScaler")
    n_features = getattr(scaler, "n_features_in_", None)
    if n_features is None:
        raise ArtifactError(f"{where}: the StandardScaler is not fitted")
    mean = None if scaler.mean_ is None else np.asarray(scaler.mean_, dtype=np.float64)
    center = mean if scaler.with_mean and mean is not None else np.zeros(n_features)
    scale = np.asarray(scaler.scale_, dtype=np.float64) if scaler.with_std else np.ones(n_features)
    return center, scale, mean


def _classifier_booster(classifier: xgb.XGBClassifier, *, where: Path) -> xgb.Booster:
    try:
        booster = classifier.get_booster()
    except Exception as err:  # xgboost's NotFittedError
        raise ArtifactError(f"{where}: the XGBClassifier is not fitted") from err
    n_classes = getattr(classifier, "n_classes_", None)
    if n_classes != 2:
        raise ArtifactError(f"{where}: the XGBClassifier has {n_classes} classes; a skill model is binary")
    _check_objective(booster, where=where)
    try:
        best = classifier.best_iteration
    except AttributeError:  # trained without early stopping
        return booster
    # predict_proba of an early-stopped classifier uses the trees up to its best iteration only.
    return booster[: best + 1]


def _check_objective(booster: xgb.Booster, *, where: Path) -> xgb.Booster:
    objective = json.loads(booster.save_config())["learner"]["objective"]["name"]
    if objective != REQUIRED_OBJECTIVE:
        raise ArtifactError(f"{where}: objective is {objective!r}; a skill model must use {REQUIRED_OBJECTIVE!r}")
    return booster


def _booster_probabilities(booster: xgb.Booster, scaled: np.ndarray) -> np.ndarray:
    matrix = xgb.DMatrix(scaled, feature_names=booster.feature_names)
    margin = np.asarray(booster.predict(matrix, output_margin=True), dtype=np.float64)
    return 1.0 / (1.0 + np.exp(-margin))


def _stated(*named: tuple[Path, Any]) -> dict[Path, tuple[str, ...]]:
    """The feature names each file states, the first a file states (a model fitted on a bare array states none)."""
    stated: dict[Path, tuple[str, ...]] = {}
    for path, names in named:
        if names is not None and path not in stated:
            stated[path] = tuple(str(name) for name in names)
    return stated


# --- the feature schema -----------------------------------------------------------------------------------------


def skill_schema(source: SkillSource, options: ImportOptions) -> tuple[FeatureSchema, list[str]]:
    """The features' names (in the model's order), imputation defaults and optional unit, range and description;
    and the features whose default is the scaler's training mean."""
    features_file = options.features or (source.folder / FEATURES_FILE)
    entries = read_features_file(features_file) if features_file.is_file() or options.features else None
    stated = dict(source.stated_names)
    if entries is not None:
        stated[features_file] = tuple(entry["name"] for entry in entries)
    if "feature_names" in source.metadata:
        stated[source.folder / METADATA_FILE] = tuple(str(name) for name in source.metadata["feature_names"] or [])
    names = _agreed_names(source, stated)

    described = dict(source.metadata.get("features") or {})
    defaults = dict(source.metadata.get("imputation_defaults") or {})
    for entry in entries or []:
        described[entry["name"]] = {key: entry[key] for key in SCHEMA_KEYS if key in entry}
        if "default" in entry:
            defaults[entry["name"]] = entry["default"]
    if isinstance(options.imputation, Path):
        imputation = read_imputation_file(options.imputation)
        defaults.update({name: imputation[name] for name in names if name in imputation})
    missing = [name for name in names if name not in defaults]
    if missing and options.imputation == MEANS:
        if source.training_mean is None:
            raise ArtifactError(
                f"{source.scaler_file}: the scaler kept no means (with_mean=False, with_std=False); give the "
                "imputation defaults in a file (--imputation FILE)"
                if source.scaler_file is not None
                else f"{source.model_file}: a model without a scaler has no training means; give the imputation "
                f'defaults in {FEATURES_FILE} ("default") or a file (--imputation FILE)'
            )
        defaults.update({name: float(source.training_mean[names.index(name)]) for name in missing})
    elif missing:
        raise ArtifactError(
            f'{source.folder}: no imputation default for {missing}: give them in {FEATURES_FILE} ("default"), in a '
            "file (--imputation FILE), or use the scaler's training means (--imputation means)"
        )
    metadata = {
        "feature_names": list(names),
        "imputation_defaults": {name: defaults[name] for name in names},
        "features": {name: entry for name, entry in described.items() if entry},
    }
    where = features_file if entries is not None else source.folder
    return schema_from_metadata(metadata, where=where), missing


def _agreed_names(source: SkillSource, stated: Mapping[Path, tuple[str, ...]]) -> list[str]:
    """The one feature order every stated list agrees on, as long as the scaler and the booster are wide."""
    width = len(source.center)
    takes = f"the scaler ({source.scaler_file.name})" if source.scaler_file is not None else "the model"
    if source.booster.num_features() != width:
        raise ArtifactError(
            f"{source.model_file}: the model takes {source.booster.num_features()} features, {takes} {width}"
        )
    if not stated:
        raise ArtifactError(
            f"{source.folder}: the model does not name its features: put {FEATURES_FILE} beside it (a JSON list "
            "of the names in the model's column order) or pass --features FILE"
        )
    for where, names in stated.items():
        if len(names) != width:
            raise ArtifactError(f"{where}: lists {len(names)} features, but {takes} takes {width}")
        for name in names:
            check_feature_name(name, where=where)
    (first, names), *others = stated.items()
    for where, other in others:
        if other != names:
            raise ArtifactError(f"{where}: lists the features {list(other)}; {first} states {list(names)}")
    return list(names)


def read_features_file(path: Path) -> list[dict[str, Any]]:
    """A features file: a JSON list of names, or of objects with a name and any of unit, minimum, maximum,
    description and default."""
    listed = read_json(path)
    allowed = {"name", "default", *SCHEMA_KEYS}
    if not isinstance(listed, list) or not listed:
        raise ArtifactError(f"{path}: expected a JSON list of feature names, or of objects with a name")
    entries = []
    for item in listed:
        entry = {"name": item} if isinstance(item, str) else item
        if not isinstance(entry, dict) or "name" not in entry or set(entry) - allowed:
            raise ArtifactError(f"{path}: each feature is a name, or an object with keys among {sorted(allowed)}")
        entries.append(entry)
    return entries


def read_imputation_file(path: Path) -> dict[str, float]:
    defaults = read_json(path)
    if not isinstance(defaults, dict) or not all(
        isinstance(value, int | float) and not isinstance(value, bool) and np.isfinite(value)
        for value in defaults.values()
    ):
        raise ArtifactError(f"{path}: expected a JSON object of feature name to a finite number")
    return {str(name): float(value) for name, value in defaults.items()}


# --- sample rows ------------------------------------------------------------------------------------------------


def sample_rows(source: SkillSource, schema: FeatureSchema, options: ImportOptions) -> tuple[np.ndarray, Any]:
    """The rows the conversion is checked on, and the scores they must get (None when unknown): a samples file
    (--samples, or samples.csv beside the model), the samples of the metadata.json beside it, or rows drawn around
    the training means (the first row the imputation defaults)."""
    samples_file = options.samples or (source.folder / SAMPLES_FILE)
    if samples_file.is_file() or options.samples:
        values = read_csv_columns(samples_file, schema.names)
        try:
            rows = np.array(values, dtype=np.float64)
        except ValueError as err:
            raise ArtifactError(f"{samples_file}: every value of {list(schema.names)} must be a number") from err
        if not np.all(np.isfinite(rows)):
            raise ArtifactError(f"{samples_file}: every value must be a finite number")
        return rows, None
    stored = source.metadata.get("samples")
    if isinstance(stored, dict) and stored.get("inputs"):
        rows = np.asarray(stored["inputs"], dtype=np.float64)
        if rows.ndim != 2 or rows.shape[1] != len(schema.names):
            raise ArtifactError(
                f"{source.folder / METADATA_FILE}: samples.inputs must be rows of {len(schema.names)} values"
            )
        return rows, stored.get("scores")
    rng = np.random.default_rng(GENERATED_SEED)
    center = source.training_mean if source.training_mean is not None else schema.defaults()
    drawn = center + source.scale * rng.uniform(-GENERATED_SPREAD, GENERATED_SPREAD, (GENERATED_ROWS, len(center)))
    return np.clip(np.vstack([schema.defaults(), drawn]), schema.minimum(), schema.maximum()), None
