"""Intent models as teams have them (any fitted scikit-learn estimator or Pipeline from raw text with
`predict_proba`), written in the store's text format (`inference/store/text_artifacts.py`).

A folder holding `classic/` and `ensemble/` (the two variants, which must answer the same intents) and, optionally,
`verticals/` (a multi-label detector, one probability column per vertical); the store's names (`intent-classic/`,
...) work too. Each holds one model file (`model.joblib`, `model.pkl`, `pipeline.joblib` or `pipeline.pkl`) and,
optionally, a `metadata.json` (kept; `labels` names the columns, `thresholds` the verticals' decision thresholds).
A team with one intent model puts its file in the folder itself: it is imported as both variants.

The intents are the estimator's `classes_`; a vertical detector trained on a `MultiLabelBinarizer`'s columns has
numbers for classes, so its verticals are named by `--verticals` or its metadata's `labels`.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from inference.errors import ArtifactError
from inference.families.intent.family import NEUTRAL_TEXTS, IntentFamily
from inference.families.intent.variants import CLASSIC_MODEL, ENSEMBLE_MODEL, VERTICALS_MODEL
from inference.store.files import METADATA_FILE
from inference.store.importing import (
    ImportOptions,
    TextSource,
    has_text_model,
    named_classes,
    read_text_source,
    text_labels,
    text_samples,
    write_text_model,
)
from inference.store.registry import check_semver

FOLDERS = {
    CLASSIC_MODEL: ("classic", CLASSIC_MODEL),
    ENSEMBLE_MODEL: ("ensemble", ENSEMBLE_MODEL),
    VERTICALS_MODEL: ("verticals", VERTICALS_MODEL),
}
SAMPLE_COLUMNS = ("text",)


def is_intent_folder(root: Path) -> bool:
    return any((root / folder).is_dir() for folders in FOLDERS.values() for folder in folders)


def intent_folders(root: Path) -> dict[str, Path]:
    """The folder of each model of the version: classic, ensemble (the same folder when `root` holds one model)
    and, when there, the verticals."""
    found = {}
    for name, folders in FOLDERS.items():
        present = [root / folder for folder in folders if (root / folder).is_dir()]
        if len(present) > 1:
            raise ArtifactError(f"{root}: holds both {present[0].name}/ and {present[1].name}/; keep one")
        if present:
            found[name] = present[0]
    if has_text_model(root):
        if CLASSIC_MODEL in found or ENSEMBLE_MODEL in found:
            raise ArtifactError(f"{root}: holds a model file and variant folders; keep one or the other")
        found[CLASSIC_MODEL] = found[ENSEMBLE_MODEL] = root
    missing = [FOLDERS[name][0] for name in (CLASSIC_MODEL, ENSEMBLE_MODEL) if name not in found]
    if missing:
        raise ArtifactError(
            f"{root}: no {' or '.join(f'{folder}/' for folder in missing)} folder: a version has both variants, "
            "classic/ and ensemble/ (a single model goes in the folder itself and serves as both)"
        )
    return found


def import_intent_models(root: Path, *, version: str, options: ImportOptions) -> list[str]:
    """Convert the intent models under `root` and save them as `version` (classic, ensemble, optional verticals),
    all or nothing."""
    check_semver(version)
    folders = intent_folders(root)
    if options.verticals is not None and VERTICALS_MODEL not in folders:
        raise ArtifactError(f"{root}: --verticals names the columns of a vertical detector, and there is no verticals/")
    sources = {
        folder: read_text_source(folder, trusted=options.trust_pickles) for folder in dict.fromkeys(folders.values())
    }
    with tempfile.TemporaryDirectory(prefix="intent-import-") as scratch:
        for name, folder in folders.items():
            source = sources[folder]
            metadata: dict[str, Any] = {}
            if name == VERTICALS_MODEL:
                labels = vertical_labels(source, options.verticals)
                metadata["thresholds"] = vertical_thresholds(source, labels)
            else:
                labels = text_labels(source)
            inputs, expected = text_samples(source, options.samples, SAMPLE_COLUMNS, NEUTRAL_TEXTS)
            write_text_model(
                source,
                Path(scratch),
                name=name,
                version=version,
                labels=labels,
                inputs=inputs,
                expected=expected,
                metadata=metadata,
            )
        return IntentFamily().import_artifacts(Path(scratch), version)


def vertical_labels(source: TextSource, given: tuple[str, ...] | None) -> tuple[str, ...]:
    if given is None and "labels" not in source.metadata and not named_classes(source):
        raise ArtifactError(
            f"{source.path}: the detector's classes are column numbers; name its verticals with --verticals a,b,... "
            f"or labels in the {METADATA_FILE} beside it"
        )
    return text_labels(source, given, flag="--verticals")


def vertical_thresholds(source: TextSource, labels: tuple[str, ...]) -> dict[str, float]:
    """The verticals' decision thresholds of the metadata beside the detector (0.5 where none is given)."""
    thresholds = source.metadata.get("thresholds") or {}
    where = source.path.parent / METADATA_FILE
    if not isinstance(thresholds, dict) or set(thresholds) - set(labels):
        raise ArtifactError(f"{where}: thresholds must map verticals among {list(labels)} to a number in [0, 1]")
    for vertical, value in thresholds.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
            raise ArtifactError(f"{where}: thresholds.{vertical} must be a number in [0, 1], got {value!r}")
    return {vertical: float(value) for vertical, value in thresholds.items()}
