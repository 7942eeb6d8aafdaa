"""What the importers of every family share: the options a team gives, the trust gate in front of a pickle, sample
inputs from a CSV file, the conversion check, and a scikit-learn text model written in the store's text format.

An importer (`inference/families/<family>/importers.py`) reads a team's folder, converts what it finds into the
store's format in a scratch directory, checks that each converted model answers as the original does, and only
then hands the scratch directory to its family's `import_artifacts`, which validates it again and saves it all or
nothing. A refusal names the file at fault and leaves the model store as it was.
"""

from __future__ import annotations

import csv
import hashlib
import pickle
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import joblib
import numpy as np

from inference.errors import ArtifactError
from inference.progress import advance_current
from inference.store.files import METADATA_FILE, read_metadata
from inference.store.text_artifacts import TextModel, check_labels_agree, load_text_artifact, write_text_artifact
from inference.store.validation import check_probabilities

# A converted model must answer the sample inputs as the original does, to this (absolute, on probabilities).
CONVERSION_TOLERANCE = 1e-6
TEXT_MODEL_FILES = ("model.joblib", "model.pkl", "pipeline.joblib", "pipeline.pkl")
# Keys of a team's metadata.json that the importer writes itself (the store adds semver, imported_at, ...).
REWRITTEN_KEYS = ("model", "skill", "labels", "samples", "source", "semver", "imported_at")


@dataclass(frozen=True)
class ImportOptions:
    """The importer's options (`import_models.py` flags); each family reads the ones that concern it."""

    trust_pickles: bool = False  # open pickle and joblib files (they run code when opened)
    samples: Path | None = None  # a CSV of sample inputs: feature columns, `text`, or `text1` and `text2`
    features: Path | None = None  # skills: the features file of every skill folder imported
    imputation: Path | Literal["means"] | None = None  # skills: a JSON {feature: default}, or the scaler's means
    verticals: tuple[str, ...] | None = None  # intent: the vertical detector's column names
    positive_label: str | None = None  # text pair: the label that means "the same meaning"


def load_pickle(path: Path, *, trusted: bool) -> Any:
    """The object in a pickle or joblib file, opened only when the team said its files are trusted."""
    if not trusted:
        raise ArtifactError(
            f"{path}: a pickle runs code when it is opened, so it is opened only with --trust-pickles: import it "
            "only if you trust whoever made it"
        )
    try:
        return joblib.load(path)
    except FileNotFoundError as err:
        raise ArtifactError(f"{path}: file is missing") from err
    except Exception as err:  # a truncated or foreign pickle fails in many ways
        raise ArtifactError(f"{path}: not a loadable pickle ({type(err).__name__}: {err})") from err


def present_files(folder: Path, names: Sequence[str]) -> list[Path]:
    return [folder / name for name in names if (folder / name).is_file()]


def one_file(folder: Path, names: Sequence[str], what: str) -> Path:
    """The one file of `names` in `folder`; a refusal when there is none or more than one."""
    found = present_files(folder, names)
    if len(found) != 1:
        held = f"holds {', '.join(path.name for path in found)}" if found else "holds none"
        raise ArtifactError(f"{folder}: expected one {what} ({' or '.join(names)}); it {held}")
    return found[0]


def folder_metadata(folder: Path) -> dict[str, Any]:
    """The team's metadata.json beside a model, or nothing."""
    return read_metadata(folder) if (folder / METADATA_FILE).is_file() else {}


def kept_metadata(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """What an import keeps of a team's metadata.json as it is (metrics, trained_at, params, reference, ...)."""
    return {key: value for key, value in metadata.items() if key not in REWRITTEN_KEYS}


def describe_sources(kind: str, paths: Sequence[Path]) -> dict[str, Any]:
    """The `source` metadata of an imported model: what it was converted from, each file with its SHA-256."""
    return {"format": kind, "files": {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in paths}}


def read_csv_columns(path: Path, columns: Sequence[str]) -> list[list[str]]:
    """The `columns` of every row of a CSV file with a header row (other columns are ignored)."""
    try:
        with path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            missing = [column for column in columns if column not in (reader.fieldnames or [])]
            if missing:
                raise ArtifactError(f"{path}: no column {missing} in its header {reader.fieldnames}")
            rows = [[row[column] for column in columns] for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise ArtifactError(f"{path}: not a readable CSV file ({err})") from err
    if not rows:
        raise ArtifactError(f"{path}: no rows under its header")
    if any(value is None or value == "" for row in rows for value in row):
        raise ArtifactError(f"{path}: every row needs a value in each of {list(columns)}")
    return rows


def check_conversion(converted: np.ndarray, original: np.ndarray, *, where: Path) -> None:
    """The converted model's probabilities on the sample inputs must be the original's."""
    difference = np.abs(np.asarray(converted, dtype=np.float64) - np.asarray(original, dtype=np.float64))
    if converted.shape != original.shape or not np.all(difference <= CONVERSION_TOLERANCE):
        worst = float(difference.max()) if converted.shape == original.shape else float("nan")
        raise ArtifactError(
            f"{where}: the converted model's probabilities differ from the original's on the sample inputs (largest "
            f"difference {worst:.3g}, allowed {CONVERSION_TOLERANCE:g}); nothing was imported"
        )
    advance_current(0, extra=f"converted and checked {where}")


# --- text models (intent, text pair): any fitted scikit-learn estimator with predict_proba -----------------------


@dataclass(frozen=True)
class TextSource:
    """A team's text model, read: its file, the estimator in it and the metadata.json beside it."""

    path: Path
    estimator: Any
    metadata: dict[str, Any]


def read_text_source(folder: Path, *, trusted: bool) -> TextSource:
    path = one_file(folder, TEXT_MODEL_FILES, "model file")
    metadata = folder_metadata(folder)
    estimator = load_pickle(path, trusted=trusted)
    if not callable(getattr(estimator, "predict_proba", None)):
        raise ArtifactError(f"{path}: a {type(estimator).__name__} has no predict_proba")
    return TextSource(path=path, estimator=estimator, metadata=metadata)


def has_text_model(folder: Path) -> bool:
    return bool(present_files(folder, TEXT_MODEL_FILES))


def named_classes(source: TextSource) -> bool:
    """Whether the estimator names its classes (a multi-label detector's classes are column numbers)."""
    classes = getattr(source.estimator, "classes_", None)
    return classes is not None and not all(isinstance(_plain(item), int) for item in classes)


def text_labels(source: TextSource, given: Sequence[str] | None = None, *, flag: str = "") -> tuple[str, ...]:
    """The names of the estimator's probability columns: `given` (by `flag`), else the `labels` of the metadata.json
    beside it, else its `classes_` as text; whichever it is must agree with `classes_`."""
    classes = getattr(source.estimator, "classes_", None)
    if given is not None:
        labels, origin = [str(label) for label in given], flag
    elif "labels" in source.metadata:
        labels, origin = source.metadata["labels"], f"the {METADATA_FILE} beside it"
        if not isinstance(labels, list) or not all(isinstance(label, str) for label in labels):
            raise ArtifactError(f"{source.path.parent / METADATA_FILE}: labels must be a list of names")
    elif classes is not None:
        labels, origin = [str(_plain(item)) for item in classes], "classes_"
    else:
        raise ArtifactError(
            f"{source.path}: the estimator has no classes_; name its probability columns with labels in the "
            f"{METADATA_FILE} beside it"
        )
    if len(labels) < 2 or len(set(labels)) != len(labels) or not all(labels):
        raise ArtifactError(f"{source.path}: labels must be at least two distinct names, got {labels}")
    if classes is not None and len(classes) != len(labels):
        raise ArtifactError(
            f"{source.path}: {origin} names {len(labels)} columns; the estimator has {len(classes)} classes"
        )
    check_labels_agree(source.estimator, tuple(labels), where=source.path)
    return tuple(labels)


def text_samples(
    source: TextSource, samples_file: Path | None, columns: Sequence[str], neutral: Sequence[object]
) -> tuple[list[Any], Any]:
    """The inputs a text model is checked on, and the probabilities they must get (None when unknown): the
    `samples_file`'s columns, else the samples of the metadata.json beside it, else `neutral` inputs."""
    if samples_file is not None:
        rows = read_csv_columns(samples_file, columns)
        return ([row[0] for row in rows] if len(columns) == 1 else rows), None
    stored = source.metadata.get("samples")
    if isinstance(stored, dict) and stored.get("inputs"):
        return list(stored["inputs"]), stored.get("probabilities")
    return list(neutral), None


def write_text_model(
    source: TextSource,
    out_dir: Path,
    *,
    name: str,
    version: str,
    labels: tuple[str, ...],
    inputs: list[Any],
    expected: Any = None,
    metadata: Mapping[str, Any] | None = None,
) -> TextModel:
    """Write `source` as `out_dir/name` in the store's text format, its probabilities on `inputs` kept as the
    samples every load checks; the written model must give the original's probabilities back."""
    original = _predict(source.estimator, inputs, where=source.path)
    if original.shape != (len(inputs), len(labels)):
        raise ArtifactError(
            f"{source.path}: predict_proba gives {original.shape[-1]} columns, for the labels {list(labels)}"
        )
    # Samples a trainer stored beside the model: the original must still give the answers it gave then.
    check_probabilities(original, where=str(source.path), expected=expected)
    written = {
        **kept_metadata(source.metadata),
        **(metadata or {}),
        "model": name,
        "labels": list(labels),
        "samples": {"inputs": inputs, "probabilities": original.tolist()},
        "source": describe_sources("scikit-learn estimator", [source.path]),
    }
    try:
        write_text_artifact(out_dir / name, source.estimator, written)
    except (pickle.PicklingError, TypeError, AttributeError) as err:
        raise ArtifactError(f"{source.path}: the estimator cannot be saved with joblib ({err})") from err
    model = load_text_artifact(out_dir / name, name=name, version=version)
    check_conversion(_predict(model.estimator, inputs, where=source.path), original, where=source.path)
    return model


def _predict(estimator: Any, inputs: list[Any], *, where: Path) -> np.ndarray:
    try:
        return np.asarray(estimator.predict_proba(inputs), dtype=np.float64)
    except Exception as err:  # a team's estimator fails in its own ways
        raise ArtifactError(
            f"{where}: predict_proba failed on the sample inputs ({type(err).__name__}: {err})"
        ) from err


def _plain(item: Any) -> Any:
    return item.item() if hasattr(item, "item") else item
