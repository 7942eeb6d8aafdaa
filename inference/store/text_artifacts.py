"""The on-disk format of the text families' models (intent classic, ensemble and verticals; text pair).

A text artifact is a directory holding:

- `model.joblib`  a fitted scikit-learn estimator (usually a Pipeline from raw text) with `predict_proba`
- `metadata.json` `{"model": name, "labels": [...], ...}`; `labels` names the estimator's probability columns,
  in order (the estimator's `classes_`, or, for a multi-label detector whose classes are column numbers, the names
  given at import); optional: `samples` (inputs and the probabilities they must get, checked at every load),
  `metrics`, `thresholds` (vertical detectors), `positive_label` (text pair), `features` (text pair, for
  `/model_info`)

`model.joblib` is a pickle: it runs code when loaded, so only artifacts trained by people you trust belong in
the model store; the importer asks for `--trust-pickles` before it opens one. No route loads a file that a client
names.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import joblib
import numpy as np

from inference.errors import ArtifactError
from inference.store.files import read_metadata, write_metadata
from inference.store.registry import (
    check_semver,
    refuse_existing,
    resolve_model_version,
    save_to_store,
    stored_model_path,
)
from inference.store.validation import check_probabilities

MODEL_FILE = "model.joblib"


@dataclass(frozen=True)
class TextModel:
    name: str
    version: str
    estimator: Any  # has predict_proba(list[str], or list of pairs) -> (n, len(labels))
    labels: tuple[str, ...]
    metadata: Mapping[str, Any] = field(default_factory=dict)
    # A faster predict_proba proven equal to the estimator's at load (`inference.families.text_compiled`).
    fast_predict: Callable[[Sequence[Any]], np.ndarray] | None = field(default=None, compare=False)

    def predict_proba(self, inputs: Sequence[Any]) -> np.ndarray:
        return (self.fast_predict or self.estimator.predict_proba)(inputs)


def write_text_artifact(directory: Path, estimator: Any, metadata: Mapping[str, Any]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    joblib.dump(estimator, directory / MODEL_FILE, compress=3)
    write_metadata(directory, metadata)


def text_labels(metadata: Mapping[str, Any], *, where: Path | str) -> tuple[str, ...]:
    """The labels a text model's metadata declares: at least two distinct, non-empty names."""
    labels = metadata.get("labels")
    if (
        not isinstance(labels, list)
        or len(labels) < 2
        or not all(isinstance(label, str) and label for label in labels)
        or len(set(labels)) != len(labels)
    ):
        raise ArtifactError(f"{where}: labels must be a list of at least two distinct names, got {labels!r}")
    return tuple(labels)


def load_text_artifact(
    directory: Path, *, name: str, version: str, metadata: Mapping[str, Any] | None = None
) -> TextModel:
    """Load and check one text artifact: it must be model `name`, with the labels its metadata declares."""
    metadata = dict(metadata if metadata is not None else read_metadata(directory))
    if metadata.get("model") != name:
        raise ArtifactError(f"{directory}: metadata names model {metadata.get('model')!r}, expected {name!r}")
    labels = text_labels(metadata, where=directory)
    path = directory / MODEL_FILE
    try:
        estimator = joblib.load(path)
    except FileNotFoundError as err:
        raise ArtifactError(f"{path}: file is missing") from err
    except Exception as err:  # a truncated or foreign pickle fails in many ways
        raise ArtifactError(f"{path}: not a loadable model ({type(err).__name__}: {err})") from err
    if not callable(getattr(estimator, "predict_proba", None)):
        raise ArtifactError(f"{path}: the estimator has no predict_proba")
    check_labels_agree(estimator, labels, where=path)
    return TextModel(name=name, version=version, estimator=estimator, labels=labels, metadata=metadata)


def check_labels_agree(estimator: Any, labels: tuple[str, ...], *, where: Path | str) -> None:
    """The metadata's labels must be the estimator's probability columns: as many, and, where the estimator names
    its classes, the same names in the same order (a multi-label detector's classes are column numbers)."""
    classes = getattr(estimator, "classes_", None)
    if classes is None:
        return
    classes = [item.item() if hasattr(item, "item") else item for item in classes]
    if len(classes) != len(labels):
        raise ArtifactError(f"{where}: the estimator has {len(classes)} classes, the metadata {len(labels)} labels")
    named = [str(item) for item in classes]
    if not all(isinstance(item, int) for item in classes) and named != list(labels):
        raise ArtifactError(f"{where}: the metadata's labels {list(labels)} are not the estimator's classes {named}")


def check_text_model(model: TextModel, neutral_inputs: Sequence[object]) -> None:
    """The smoke test of a text model: its stored samples give the probabilities stored with them, or, without
    samples, `neutral_inputs` give finite probabilities, one column per label."""
    samples = model.metadata.get("samples") or {}
    inputs = samples.get("inputs") or list(neutral_inputs)
    where = f"{model.name}:{model.version}"
    try:
        probabilities = np.asarray(model.estimator.predict_proba(inputs), dtype=np.float64)
    except Exception as err:  # a model that cannot predict must not serve
        raise ArtifactError(f"{where}: the smoke prediction failed ({type(err).__name__}: {err})") from err
    if probabilities.shape != (len(inputs), len(model.labels)):
        raise ArtifactError(
            f"{where}: predict_proba gave shape {probabilities.shape}, expected ({len(inputs)}, {len(model.labels)})"
        )
    check_probabilities(probabilities, where=where, expected=samples.get("probabilities"))


def load_stored_text_model(name: str, version: str) -> TextModel:
    """A text model from the store (`latest` resolved), checked as `load_text_artifact` does."""
    resolved = resolve_model_version(name, version)
    return load_text_artifact(stored_model_path(name, resolved), name=name, version=resolved)


def import_text_artifacts(
    root: Path, *, family: str, names: Sequence[str], version: str, neutral_inputs: Sequence[object]
) -> list[str]:
    """Validate the text artifacts `root/<name>/` (the smoke test included) and save each as `<name>:<version>`;
    all or nothing, never overwriting."""
    check_semver(version)
    models = {name: load_text_artifact(root / name, name=name, version=version) for name in names}
    for model in models.values():
        check_text_model(model, neutral_inputs)
    refuse_existing(list(names), version)
    return [
        save_to_store(name, version, root / name, model.metadata, {"family": family}) for name, model in models.items()
    ]
