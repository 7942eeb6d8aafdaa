"""The on-disk format of the text families' models (intent classic, ensemble and verticals; text pair).

A text artifact is a directory holding:

- `model.joblib`  a fitted scikit-learn estimator (usually a Pipeline from raw text) with `predict_proba`
- `metadata.json` `{"model": name, "labels": [...], "metrics": {...}, ...}`; `labels` is the order of the
  estimator's probability columns

`model.joblib` is a pickle: it runs code when loaded, so only artifacts trained by people you trust belong in
the model store. No route loads a file that a client names.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import joblib

from inference.artifacts import read_metadata, write_metadata
from inference.errors import ArtifactError

MODEL_FILE = "model.joblib"


@dataclass(frozen=True)
class TextModel:
    name: str
    version: str
    estimator: Any  # has predict_proba(list[str] or a feature matrix) -> (n, len(labels))
    labels: tuple[str, ...]
    metadata: Mapping[str, Any] = field(default_factory=dict)


def write_text_artifact(directory: Path, estimator: Any, metadata: Mapping[str, Any]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    joblib.dump(estimator, directory / MODEL_FILE, compress=3)
    write_metadata(directory, metadata)


def load_text_artifact(
    directory: Path, *, name: str, version: str, labels: Sequence[str], metadata: Mapping[str, Any] | None = None
) -> TextModel:
    """Load and check one text artifact: it must be model `name` with exactly `labels`, in any order."""
    metadata = dict(metadata if metadata is not None else read_metadata(directory))
    if metadata.get("model") != name:
        raise ArtifactError(f"{directory}: metadata names model {metadata.get('model')!r}, expected {name!r}")
    stored_labels = metadata.get("labels")
    if not isinstance(stored_labels, list) or sorted(stored_labels) != sorted(labels):
        raise ArtifactError(f"{directory}: labels {stored_labels!r} do not match the catalogue's {sorted(labels)}")
    path = directory / MODEL_FILE
    try:
        estimator = joblib.load(path)
    except FileNotFoundError as err:
        raise ArtifactError(f"{path}: file is missing") from err
    except Exception as err:  # a truncated or foreign pickle fails in many ways
        raise ArtifactError(f"{path}: not a loadable model ({type(err).__name__}: {err})") from err
    if not callable(getattr(estimator, "predict_proba", None)):
        raise ArtifactError(f"{path}: the estimator has no predict_proba")
    return TextModel(name=name, version=version, estimator=estimator, labels=tuple(stored_labels), metadata=metadata)
