"""A text-pair model as a team has it (any fitted scikit-learn estimator or Pipeline that takes pairs, each a list
`[text1, text2]`, and has `predict_proba` over two labels), written in the store's text format
(`inference/store/text_artifacts.py`).

The folder holds `textpair/` or is itself the model's folder: one model file (`model.joblib`, `model.pkl`,
`pipeline.joblib` or `pipeline.pkl`) and, optionally, a `metadata.json` (kept; `labels`, `positive_label`,
`features` for `/model_info`, `metrics`). The labels are the estimator's `classes_`; the one that means "the same
meaning" is `--positive-label`, the metadata's `positive_label`, or the only label among 1/true/yes/same/paraphrase.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from inference.errors import ArtifactError
from inference.families.textpair.family import NEUTRAL_PAIRS, TextPairFamily
from inference.families.textpair.scorer import TEXTPAIR_MODEL, positive_label
from inference.store.importing import (
    ImportOptions,
    has_text_model,
    read_text_source,
    text_labels,
    text_samples,
    write_text_model,
)
from inference.store.registry import check_semver
from inference.store.text_artifacts import TextModel

SAMPLE_COLUMNS = ("text1", "text2")


def is_textpair_folder(root: Path) -> bool:
    return (root / TEXTPAIR_MODEL).is_dir()


def textpair_folder(root: Path) -> Path:
    if is_textpair_folder(root):
        return root / TEXTPAIR_MODEL
    if has_text_model(root):
        return root
    raise ArtifactError(f"{root}: no {TEXTPAIR_MODEL}/ folder and no model file in it")


def import_textpair_model(root: Path, *, version: str, options: ImportOptions) -> list[str]:
    """Convert the text-pair model under `root` and save it as `textpair:<version>`."""
    check_semver(version)
    source = read_text_source(textpair_folder(root), trusted=options.trust_pickles)
    labels = text_labels(source)
    if len(labels) != 2:
        raise ArtifactError(f"{source.path}: a text-pair model has two labels, not {list(labels)}")
    stated = options.positive_label or source.metadata.get("positive_label")
    try:
        positive = positive_label(
            TextModel(
                name=TEXTPAIR_MODEL,
                version=version,
                estimator=source.estimator,
                labels=labels,
                metadata={} if stated is None else {"positive_label": stated},
            )
        )
    except ValueError as err:
        raise ArtifactError(
            f"{source.path}: say which of {list(labels)} means the same meaning (--positive-label)"
        ) from err
    if positive not in labels:
        raise ArtifactError(f"{source.path}: the positive label {positive!r} is not one of its labels {list(labels)}")
    inputs, expected = text_samples(source, options.samples, SAMPLE_COLUMNS, NEUTRAL_PAIRS)
    with tempfile.TemporaryDirectory(prefix="textpair-import-") as scratch:
        write_text_model(
            source,
            Path(scratch),
            name=TEXTPAIR_MODEL,
            version=version,
            labels=labels,
            inputs=inputs,
            expected=expected,
            metadata={"positive_label": positive},
        )
        return TextPairFamily().import_artifacts(Path(scratch), version)
